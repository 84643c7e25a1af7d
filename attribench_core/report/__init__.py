"""`attribench report`: a self-contained HTML (and Markdown) report from everything in a store.

`content` holds what a report is made of (sections of tables and figures) and what the store holds for it
(`ReportInput`); plugins contribute sections through the `register_reports` hook; `figures` renders
matplotlib figures into PNG blocks.
"""
