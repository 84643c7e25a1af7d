"""attribench-bam: BAM (Yang & Kim 2019): objects pasted on scenes, relative feature importance."""
