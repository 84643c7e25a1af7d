# The README's quickstart: two commands that each do their own set-up.
#   make run    the headline benchmark: `attribench run bam.mcs --explainer=ig` (BAM's model contrast score
#               of Integrated Gradients on the embedded bam-synth)
#   make test   the test suite (pytest)
# Both create the virtual environment $(VENV) with `$(PYTHON3) -m venv` on first use and install
# requirements.txt into it (the core with its extras, the first-party plugins editable, pytest). A stamp in
# the environment records the install: it is redone when requirements.txt or a pyproject.toml is newer.
# The environment passes through (ATTRIBENCH_HOME, ATTRIBENCH_STRICT_PLUGINS, ...).
#   make run VENV=~/envs/attribench   the virtual environment elsewhere (VENV may also come from the shell)
#   make run PYTHON3=python3.12       the interpreter that creates it
#   make run PYTHON=/path/to/python   an environment you set up yourself: used as it is, nothing installed

VENV ?= .venv
PYTHON3 ?= python3
INSTALL_INPUTS := requirements.txt pyproject.toml $(wildcard plugins/*/pyproject.toml)
ifeq ($(origin PYTHON),command line)
SETUP :=
else
PYTHON := $(VENV)/bin/python
SETUP := $(VENV)/.attribench-installed
endif

.PHONY: run test

run: $(SETUP)
	$(PYTHON) -m attribench_core run bam.mcs --explainer=ig

test: $(SETUP)
	$(PYTHON) -m pytest

$(VENV)/.attribench-installed: $(INSTALL_INPUTS)
	test -x $(VENV)/bin/python || $(PYTHON3) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -r requirements.txt
	touch $@
