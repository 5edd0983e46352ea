#!/usr/bin/env python3
# scaled_suite.py: the API suite again on the data path at scale. One PostgreSQL server with
# a streaming replica (pg_basebackup), moto's S3 server and a redis-server are started here
# on loopback; then api_flow.py, bad_input.py and schemathesis.sh each run against a
# `spool serve` given, through its SPOOL_* environment:
#   database.url             a database of its own on the primary
#   database.job_shards      two more databases there (K = 2: jobs spread by id)
#   database.replicas        the replica (GETs of lists, jobs and engines read there)
#   storage.backend = s3     the moto bucket, under a prefix of its own
#   queue.url                Redis (the job queue, the events and the record cache)
# Each script must pass as it does on the embedded default. Exit 0 only if all pass.
# Usage: scaled_suite.py [SCRIPT...]   (default all three; needs .build/debug/spool; SPOOL=PATH for another)
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

from spoolproc import HERE, PostgresServer, RedisServer, start_s3

SCRIPTS = [["api_flow.py"], ["bad_input.py"], ["schemathesis.sh"]]


def main():
    work = tempfile.mkdtemp(prefix="spool-scaled-", dir="/tmp")
    os.chmod(work, 0o711)  # the postgres user passes through
    primary = replica = redis = s3 = None
    failed = []
    chosen = [s for s in SCRIPTS if not sys.argv[1:] or s[0] in sys.argv[1:]]
    try:
        primary = PostgresServer(os.path.join(work, "pg")).start()
        replica = primary.replica()
        redis = RedisServer(os.path.join(work, "redis")).start()
        s3_url, s3 = start_s3("spool-scaled")
        print(f"scaled_suite: PostgreSQL {primary.address} (replica {replica.address}), Redis {redis.url}, S3 {s3_url}")
        for n, script in enumerate(chosen):
            tag = f"s{n}_{uuid.uuid4().hex[:8]}"
            env = dict(os.environ)
            env.update({
                "SPOOL_DATABASE_URL": primary.create_database(f"main_{tag}"),
                "SPOOL_DATABASE_JOB_SHARDS": ",".join(primary.create_database(f"jobs{k}_{tag}") for k in range(2)),
                "SPOOL_DATABASE_REPLICAS": replica.address,
                "SPOOL_STORAGE_BACKEND": "s3",
                "SPOOL_STORAGE_S3_ENDPOINT": s3_url,
                "SPOOL_STORAGE_S3_BUCKET": "spool-scaled",
                "SPOOL_STORAGE_S3_PREFIX": tag + "/",
                "SPOOL_STORAGE_S3_ACCESS_KEY_ID": "e2e",
                "SPOOL_STORAGE_S3_SECRET_ACCESS_KEY": "e2e-secret",
                "SPOOL_QUEUE_URL": redis.url,
                "SPOOL_QUEUE_KEY_PREFIX": tag,
            })
            path = os.path.join(HERE, script[0])
            argv = ([sys.executable, path] if path.endswith(".py") else [path]) + script[1:]
            print(f"--- {script[0]} with S3, a replica and 2 job shards", flush=True)
            r = subprocess.run(argv, env=env)
            if r.returncode != 0:
                failed.append(script[0])
    finally:
        for s in (s3,):
            if s:
                s.stop()
        if redis:
            redis.stop()
        for pg in (replica, primary):
            if pg:
                pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"scaled_suite: FAILED: {', '.join(failed)}")
        sys.exit(1)
    print(f"scaled_suite: ok ({', '.join(s[0] for s in chosen)} with S3, a replica and 2 job shards)")


if __name__ == "__main__":
    main()
