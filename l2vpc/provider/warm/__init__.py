"""Warm starts: a per-user "zygote" process forks ready-made provider processes.

Terraform starts the provider 3–5 times per command and waits for each handshake line. A cold
start spends most of its time importing (grpcio alone ~150 ms here). Like Gradle's daemon or
Android's zygote, a long-lived process imports everything once and forks a child per start;
the child is then a provider process that only has to build its certificate and gRPC server.

    client.py       what `python -S -P -m l2vpc.provider` runs: asks a zygote for a child and
                    stands in for it (signals, exit status), else starts cold (and a zygote)
    zygote.py       the long-lived process: preloads, listens, forks a child per request
    child.py        turns a fresh fork into what a cold start of that request would be
    key.py          what a zygote's imports depend on (equal keys: a child = a cold start)
    runtime_dir.py  the private directory of zygote sockets, locks, logs; every path op on it
    wire.py         the request framing between client and zygote
    control.py      requests other than starts: ping, stop (tests, benchmarks)

This package imports nothing at load time: the client must stay cheap (os, sys and the C
modules _socket and _signal only). The generic server (server.py) knows a warm child only as
a `Lifeline` it is handed; nothing outside this package imports it except __main__ and tests.

Why fork after import is safe here:
- grpcio: importing `grpc` loads the Cython module but does not call grpc_init(); gRPC core
  starts its threads, pollers and (BoringSSL) TLS state only when the first channel or server
  is made, which happens in the child. The zygote makes no grpc object, and refuses to fork
  if it has more than one thread (/proc/self/task), so no lock or thread is lost in fork.
- OpenSSL (cryptography): the zygote generates no key and draws no random numbers
  (tls.warm_up only verifies), so OpenSSL's DRBG is first seeded in each child (strace shows
  no OpenSSL getrandom before fork); OpenSSL 3+ would also reseed on a pid change. The
  certificate serial comes from os.urandom (the kernel). Each child makes its own key.
- Python: `random` is reseeded in the child (and by its own at-fork hook). What children do
  share are hash seeds: Python's str hash seed and the hash-map seeds the Rust extensions
  (cryptography, pydantic-core) draw at import. None is key material; sharing them only
  weakens hash-flooding resistance, against input that comes from Terraform anyway.

What a warm child inherits from the zygote rather than from Terraform: resource limits,
niceness, scheduling and OOM settings (the zygote was started by an earlier provider start
of the same user, key and cgroup, so these normally match), and its command line in `ps`
(the zygote's `python -S -P -c ...`; its name, as `ps -e` and top show it, is l2vpc-provider,
the zygote's l2vpc-zygote).
"""
