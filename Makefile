# `make bench`: the benchmark suite (Benchmarks/README.md). Installs what it
# needs, builds mcastfs in release, mounts it and its anchors, prints one table
# and writes results/bench.json. About 7.5 minutes on 2 cores.
.PHONY: bench bench-profile

bench:
	Benchmarks/suite/run

# The same, plus perf profiles (cpu-clock) of mcastfs in the 1->16 stream and paced runs
# (record view) and the 1->16 framed stream.
bench-profile:
	BENCH_PROFILE=1 Benchmarks/suite/run
