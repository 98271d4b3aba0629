# iotwatch — the two commands a fresh machine needs are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
DEMO    := pcaps/demo-office.pcap

.PHONY: all venv demo test pcaps bench bench-live sysdeps lint docs clean model eval lock messages type-upload

all: test

# Installs are reproducible: every package comes at the version constraints.txt names (the set
# the tests and docs/benchmarks.md were run with). `make lock` upgrades it on purpose.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,dask]'
	@touch $(STAMP)

## make lock: re-resolve every dependency to its newest release into constraints.txt (then re-run
## `make test` and `make bench`, and say what moved in docs/benchmarks.md)
lock:
	rm -rf build/lock-venv
	$(PY) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q --upgrade pip
	build/lock-venv/bin/python -m pip install -q -e '.[test,dask]'
	{ echo "# pip constraints for iotwatch and its test and dask extras: \`make lock\` regenerates this file"; \
	  build/lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^iotwatch'; } > constraints.txt
	rm -rf build/lock-venv

# Runs use kernels compiled ahead of time (iotwatch/_aot.py, docs/design.md "Compiled kernels"):
# rebuilt whenever a source changes (a module built from other sources is never loaded);
# iotwatch's bytecode is written too (PYTHONDONTWRITEBYTECODE=1 shells otherwise recompile it on
# every start). Without a C compiler (`make sysdeps`) every run uses numba's JIT, as before.
AOT     := $(VENV)/.aot-stamp
$(AOT): $(STAMP) $(shell find iotwatch -name '*.py')
	$(BIN)/python -m compileall -q iotwatch >/dev/null
	$(BIN)/python -m iotwatch._aot || echo "iotwatch: no kernels compiled ahead of time: every run uses numba's JIT"
	@touch $(AOT)

venv: $(STAMP) $(AOT)

$(DEMO): | $(STAMP)
	$(BIN)/python -m iotwatch.synth.demo $(DEMO)

## make demo: create .venv, install, analyse the bundled demo capture (an office) and print the
## devices; then rebuild the hospital incident (a 150 s scenario) and show its alerts; then the
## same site after the recorder was isolated (60 s), the before/after comparison, the evidence
## pack and the audit report in Japanese and English
demo: $(STAMP) $(AOT) $(DEMO)
	$(BIN)/iotwatch analyze $(DEMO) --out out/demo
	$(BIN)/iotwatch synth hospital --duration 150 --quiet 60 --uplink-mbps 2 --seed 7 --out out/demo-hospital.pcap
	$(BIN)/iotwatch analyze out/demo-hospital.pcap --uplink-mbps 2 --out out/demo-hospital --top 8
	$(BIN)/iotwatch synth after --duration 60 --uplink-mbps 2 --seed 7 --out out/demo-after.pcap
	$(BIN)/iotwatch analyze out/demo-after.pcap --uplink-mbps 2 --out out/demo-after --quiet
	$(BIN)/iotwatch compare out/demo-hospital out/demo-after
	$(BIN)/iotwatch evidence out/demo-hospital
	$(BIN)/iotwatch report out/demo-hospital --lang ja --after out/demo-after
	$(BIN)/iotwatch report out/demo-hospital --lang en --after out/demo-after

## make test: the whole test suite (Wireshark oracle tests need tshark: `make sysdeps`)
test: $(STAMP) $(AOT)
	$(BIN)/python -m pytest -q

## make pcaps: regenerate the project's own demo capture with scapy
pcaps: $(STAMP)
	$(BIN)/python -m iotwatch.synth.demo $(DEMO)

## make sysdeps: system packages for the oracle tests, the live capture and its tests (dumpcap
## from wireshark-common, tcpreplay, iproute2), the benchmark, and the kernels compiled ahead of
## time (gcc, Python's headers) (Debian/Ubuntu, as root);
## chromium (the report's browser test) and fonts-noto-cjk (Japanese in the report's charts)
sysdeps:
	@if command -v tshark >/dev/null && command -v tcpdump >/dev/null && command -v cc >/dev/null \
	    && command -v dumpcap >/dev/null && command -v tcpreplay >/dev/null && command -v ip >/dev/null \
	    && [ -x /usr/bin/time ] && [ -e /usr/include/pcap/pcap.h ] \
	    && [ -e "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
		echo "system packages present"; \
	else \
		apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			tshark wireshark-common tcpdump tcpreplay iproute2 libpcap-dev gcc libc6-dev python3-dev time >/dev/null; \
	fi
	@if [ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -q "Noto Sans CJK JP"; then \
		echo "report packages present"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
			chromium fonts-noto-cjk fontconfig >/dev/null; \
	fi

BENCH_DATA := bench/data/mix.pcap bench/data/synflood.pcap

bench/baseline: bench/baseline.c | sysdeps
	cc -O2 bench/baseline.c -lpcap -o bench/baseline

bench/data/%.pcap: bench/fastgen.py | $(STAMP)
	$(BIN)/python bench/fastgen.py $* $@

## make bench: throughput and memory against C, tcpdump, nfstream and dpkt → docs/benchmarks.md
bench/.venv/.stamp: pyproject.toml
	$(PY) -m venv bench/.venv
	bench/.venv/bin/python -m pip install -q 'nfstream>=6.5' 'dpkt>=1.9'
	@touch $@

bench: $(STAMP) $(AOT) sysdeps bench/baseline bench/.venv/.stamp $(BENCH_DATA) bench/data/flood10m.pcap
	BENCH_PYTHON=bench/.venv/bin/python $(BIN)/python bench/run.py --with-10m

## make bench-live: live capture in a veth pair (as root): the highest tcpreplay rate with zero drops
## over 60 s with the whole analysis on, and the window end → alert delay → bench/out/live.md and
## docs/benchmarks.md (between its bench-live markers)
bench-live: $(STAMP) $(AOT) sysdeps
	$(BIN)/python bench/live.py --seconds 60 --out bench/out/live.md --doc docs/benchmarks.md

SHARED_PCAPS ?= ../shared/pcaps

## make model: rebuild models/behaviour (generated scenarios, seeds 1-3, + the labelled shared captures)
## and models/device_type (the labelled shared captures) through iotwatch/learn (features from the same
## analyze run as detection), reproducibly (fixed seeds)
model: $(STAMP)
	@mkdir -p build
	$(BIN)/python -m iotwatch.synth.sets train build/train $(SHARED_PCAPS) > build/train-labels.txt
	$(BIN)/iotwatch train $$(cat build/train-labels.txt) $(wildcard $(SHARED_PCAPS)/LABELS.tsv) \
		--out models/behaviour --n-jobs 2 --seed 0
	@if [ -f $(SHARED_PCAPS)/LABELS.tsv ]; then \
		$(BIN)/iotwatch train --kind device_type $(SHARED_PCAPS)/LABELS.tsv --out models/device_type \
			--catalogue models/product_catalogue --n-jobs 2; \
	else echo "no $(SHARED_PCAPS)/LABELS.tsv: models/device_type and models/product_catalogue kept as they are"; fi

## make type-upload: iotwatch/detect/type_upload.json (what each device type uploads when nothing is wrong:
## the upload rule's reference for a device without history) from the normal hosts of make model's sets
## and the shared labels
type-upload: $(STAMP)
	@mkdir -p build
	$(BIN)/python -m iotwatch.synth.sets train build/train $(SHARED_PCAPS) > build/train-labels.txt
	$(BIN)/python -m iotwatch.learn.type_upload $$(cat build/train-labels.txt) $(wildcard $(SHARED_PCAPS)/LABELS.tsv) --n-jobs 2

## make eval: held-out scenarios (seeds 1001-1002), injections, the shared labels → docs/evaluation.md
eval: $(STAMP)
	@mkdir -p build
	$(BIN)/python -m iotwatch.synth.sets train build/train $(SHARED_PCAPS) > build/train-labels.txt
	$(BIN)/python -m iotwatch.synth.sets eval build/eval $(SHARED_PCAPS) > build/eval-labels.txt
	$(BIN)/python -m iotwatch.learn.report docs/evaluation.md build/eval-labels.txt $(SHARED_PCAPS) build/train-labels.txt

## make docs: regenerate docs/records.md from iotwatch/records.py
docs: $(STAMP)
	$(BIN)/python -c 'from iotwatch.records import records_markdown as m; print(m(), end="")' > docs/records.md

## make messages: re-extract the report's English messages and merge them into the Japanese catalog
messages: $(STAMP)
	@mkdir -p build
	$(BIN)/pybabel extract --no-default-keywords -k _ -k n_:1,2 --no-location --omit-header --sort-output \
		-o build/iotwatch.pot iotwatch/report
	$(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date -w 110 -D iotwatch \
		-i build/iotwatch.pot -d iotwatch/report/locale -l ja

lint: $(STAMP)
	$(BIN)/ruff check iotwatch tests bench

clean:
	rm -rf out bench/data bench/out bench/baseline .pytest_cache
