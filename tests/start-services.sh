#!/bin/sh
# Start the local PostgreSQL and Redis the tests use, when installed but down.
# A service that is not installed is left to the tests, which skip its half with a
# visible line (or fail under CI=true).
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

if command -v pg_isready >/dev/null 2>&1 && ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "starting PostgreSQL" >&2
        for version in $(ls /etc/postgresql 2>/dev/null); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        done
        for _ in 1 2 3 4 5 6 7 8 9 10; do pg_up && break; sleep 1; done
    fi
fi

if command -v redis-server >/dev/null 2>&1 && ! redis_up; then
    echo "starting Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in 1 2 3 4 5; do redis_up && break; sleep 1; done
fi
exit 0
