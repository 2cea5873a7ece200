"""Benchmarks for the controller: API latency under concurrency, leader failover, and profiles.

``make bench`` runs ``python -m tests.bench``; ``--quick`` is a smoke run of about a minute. Every figure is
one JSON line on stdout (``"bench"`` says which kind); progress and notes go to stderr. What a run does:

1. Starts 3 real controller processes (tests.harness) in a temp dir that is removed afterwards; every
   process is killed on exit, also on Ctrl-C, SIGTERM or an exception.
2. ``api_latency``: 64 keep-alive clients (aiohttp, split over ``--client-procs`` processes so the load
   generator's GIL is not one bottleneck) read ``GET /v1/secrets/{name}`` (linearizable), read with
   ``?stale=true`` and write ``POST /v1/secrets``, all on the leader and spread over the 3 nodes: first in
   a closed loop (saturation), then paced at a fixed rate (the latency of the path below saturation).
   Each line carries p50/p95/p99/max, throughput, Raft entries/s and elections, and the CPU use of the
   load generator, of each controller and of the rest of the machine (``other_cpu_pct``; a phase with a
   lot of it is re-run once and flagged ``noisy``).
3. ``failover``: 4 writers, kill -9 of the leader, time to the first acknowledged write sent after the
   kill, and a check that every acknowledged write is readable on every node (``lost``); 3 rounds, the
   killed node is restarted and caught up each time.
4. ``profile``: when a latency goal is missed and py-spy is installed (see tests/bench/profile.py), the
   missed operations are re-run while py-spy samples the leader and a follower; the hot spots are listed
   as shares of the GIL-holding samples.
5. ``compute`` (tests/bench/compute_sim.py, on a cluster of its own): up to 10,000 simulated hosts joined and
   heartbeating over mutual TLS (``compute_join``, ``compute_heartbeats``: the leader's CPU), placements/s
   and latency of batches and single creates at 1,000 and 10,000 hosts (``compute_placement``), and docker
   launch latency through a real agent (``compute_launch``). ``--only compute``; ``--hosts 1000,10000``.
6. ``summary``: each goal, the figure that decides it, and whether it is met.
"""
