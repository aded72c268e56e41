"""Helpers for the store tests: a stores.yaml for store_check and a runner.

store_check (tests/tools/store_check.c) drives the mailbox's store code
(libpq pool, blob stores, memory stores, directory) on its own libev loop;
see its header comment for the commands.
"""
import json
import subprocess

import harness


def yaml_str(s):
    # JSON strings are valid YAML double-quoted scalars.
    return json.dumps(s)


def stores_yaml(path, *, pg=None, fs=None, s3=None, bucket=None, redis=None, prefix=None,
                s3_retries=None, s3_timeout=None, s3_endpoint=None, s3_prefix=None,
                access_key=None, secret_key=None, pg_url=None, pg_password=None,
                redis_timeout=None, pg_query_timeout=None, pg_pool_size=None,
                redis_password=None):
    """Write a stores section for store_check.  pg: a PgDatabase or
    PostgresServer (or pg_url/pg_password given directly); fs: a directory;
    s3: an S3Server or SigV4Proxy with bucket; redis: a RedisServer or URL."""
    lines = []
    url = pg_url if pg_url is not None else (pg.url_nopw if pg is not None else
                                             "postgres://nobody@127.0.0.1:1/none")
    pw = pg_password if pg_password is not None else (pg.password if pg is not None else None)
    data = f"data: {{ postgres: {yaml_str(url)}"
    if pw is not None:
        data += f", password: {yaml_str(pw)}"
    data += ", connect_timeout: 3s"
    if pg_query_timeout is not None:
        data += f", query_timeout: {pg_query_timeout}"
    if pg_pool_size is not None:
        data += f", pool_size: {pg_pool_size}"
    data += " }"
    lines.append(data)
    if s3 is not None or s3_endpoint is not None:
        ep = s3_endpoint or s3.endpoint
        parts = [f"endpoint: {yaml_str(ep)}", f"bucket: {yaml_str(bucket)}",
                 f"access_key: {yaml_str(access_key or 'S3RVER')}",
                 f"secret_key: {yaml_str(secret_key or 'S3RVER')}", "region: us-east-1"]
        if s3_retries is not None:
            parts.append(f"retries: {s3_retries}")
        if s3_timeout is not None:
            parts.append(f"timeout: {s3_timeout}")
        if s3_prefix is not None:
            parts.append(f"prefix: {yaml_str(s3_prefix)}")
        lines.append("blob: { s3: { " + ", ".join(parts) + " } }")
    else:
        lines.append(f"blob: {{ fs: {{ path: {yaml_str(str(fs or '/nonexistent'))} }} }}")
    mem = []
    if redis is not None:
        mem.append(f"redis: {yaml_str(redis if isinstance(redis, str) else redis.url)}")
    if prefix is not None:
        mem.append(f"prefix: {yaml_str(prefix)}")
    if redis_timeout is not None:
        mem.append(f"timeout: {redis_timeout}")
    if redis_password is not None:
        mem.append(f"password: {yaml_str(redis_password)}")
    lines.append("memory: { " + ", ".join(mem) + " }")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cfg, *args, stdin=None, timeout=60, check=True):
    """Run store_check; returns CompletedProcess (text).  check: rc must be 0."""
    argv = [str(harness.tool_path("store_check")), "-c", str(cfg)] + [str(a) for a in args]
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"store_check {' '.join(map(str, args))} failed ({r.returncode}):\n"
                             f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def spawn(cfg, *args, log_path):
    argv = [str(harness.tool_path("store_check")), "-c", str(cfg)] + [str(a) for a in args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log_path, "wb"), text=True)


def last_line(s):
    lines = [l for l in s.strip().split("\n") if l]
    return lines[-1] if lines else ""
