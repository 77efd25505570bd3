#!/usr/bin/env python3
"""Spilo's configuration step, as a stand-in (tests/e2e only; runs inside the e2e "Spilo" image).

Written for this suite (not copied from zalando/spilo), with the part of the contract of
Spilo's ``configure_spilo.py`` that infra/02-postgres relies on:

* the same environment: ``SCOPE`` (default ``dummy``), ``<DCS>_<PARAM>`` such as
  ``ETCD3_HOSTS`` (a value that is not a YAML list is wrapped in ``[...]``), ``PGUSER_SUPERUSER``
  / ``PGPASSWORD_SUPERUSER`` (default postgres / zalando), ``PGUSER_STANDBY`` /
  ``PGPASSWORD_STANDBY`` (standby / standby), ``PGPORT`` / ``APIPORT``, ``PG_CONNECT_ADDRESS`` /
  ``RESTAPI_CONNECT_ADDRESS`` (default: the container's address), ``ALLOW_NOSSL``, ``PGVERSION``,
  ``SPILO_CONFIGURATION`` (a YAML mapping deep-merged over the template: user values win, a user
  list replaces the template's);
* a Spilo-like template: the same DCS timing (ttl 30, loop_wait 10, retry_timeout 10), the same
  replication settings, ``shared_buffers`` 1/4 and ``max_connections`` 1 per 30 MB (100-1000) of
  the cgroup memory limit, SSL on with a self-signed certificate, and Spilo's pg_hba (non-SSL
  connections from the network rejected unless ``ALLOW_NOSSL`` is non-empty);
* ``$RW_DIR/postgres.yml`` and the certificate are written only when they do not exist (Spilo
  writes them when the container is created; a restart keeps them).

Left out (Spilo features the stack does not use): WAL-E/WAL-G, clones and standby clusters,
cron, pgbouncer, PAM OAuth2, Spilo's extensions (bg_mon, pg_auth_mon, set_user, ...), its
``post_init`` script and callbacks, the embedded etcd of a DCS-less container (refused here),
and the en_US locale (the cluster is initialised with C.UTF-8).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

DCS_NAMES = ("zookeeper", "exhibitor", "consul", "etcd3", "etcd")  # Spilo's order (kubernetes aside)


def log(msg: str) -> None:
    print(f"configure_standin: {msg}", flush=True)


def memory_mb() -> float:
    """The cgroup memory limit (v1 or v2), else the host's memory, in MB."""
    for path in ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"):
        try:
            return min(int(Path(path).read_text().strip()) / 1048576, host_memory_mb())
        except (OSError, ValueError):
            continue
    return host_memory_mb()


def host_memory_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1048576


def deep_update(a, b):
    """Spilo's merge: dicts recursively; for two lists, or any other values, ``a`` (the user's) wins."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in b:
            a[key] = deep_update(a[key], b[key]) if key in a else b[key]
        return a
    if isinstance(a, list) and isinstance(b, list):
        return a
    return a if a is not None else b


def dcs_config(env: dict[str, str]) -> dict:
    found: dict[str, dict] = {}
    for name, value in env.items():
        if "_" not in name:
            continue
        dcs, param = name.lower().split("_", 1)
        if dcs not in DCS_NAMES:
            continue
        if param == "hosts":
            if not (value.strip().startswith("-") or "[" in value):
                value = f"[{value}]"
            value = yaml.safe_load(value)
        found.setdefault(dcs, {})[param] = value
    for dcs in DCS_NAMES:
        if dcs in found:
            return {dcs: found[dcs]}
    return {}


def address(env: dict[str, str]) -> str:
    ip = socket.getaddrinfo(socket.gethostname(), 0, socket.AF_UNSPEC, socket.SOCK_STREAM)[0][4][0]
    return f"[{ip}]" if ":" in ip else ip


def bin_dir(pgdata: str) -> str:
    version_file = Path(pgdata) / "PG_VERSION"
    version = version_file.read_text().strip() if version_file.is_file() else os.environ.get("PGVERSION", "")
    if not version or not Path(f"/usr/lib/postgresql/{version}/bin").is_dir():
        versions = sorted((p.name for p in Path("/usr/lib/postgresql").iterdir() if p.name.isdigit()), key=int)
        version = versions[-1]
    return f"/usr/lib/postgresql/{version}/bin"


def template(env: dict[str, str]) -> dict:
    rw = env["RW_DIR"]
    mem = memory_mb()
    host = address(env)
    su, standby = env.get("PGUSER_SUPERUSER", "postgres"), env.get("PGUSER_STANDBY", "standby")
    nossl = bool(env.get("ALLOW_NOSSL"))
    hba = [
        "local   all             all                                   trust",
        "host    all             all                127.0.0.1/32       md5",
        "host    all             all                ::1/128            md5",
        f"local   replication     {standby}                    trust",
        f"hostssl replication     {standby} all                md5",
    ]
    hba += (["host    all             all                all                md5"] if nossl else
            ["hostnossl all           all                all                reject",
             "hostssl all             all                all                md5"])
    return {
        "bootstrap": {
            "dcs": {
                "ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 33554432,
                "postgresql": {
                    "use_pg_rewind": True, "use_slots": True,
                    "parameters": {
                        "archive_mode": "on", "archive_timeout": "1800s", "wal_level": "hot_standby",
                        "wal_log_hints": "on", "wal_compression": "on", "max_wal_senders": 10,
                        "max_connections": min(max(100, int(mem / 30)), 1000),
                        "max_replication_slots": 10, "hot_standby": "on",
                        "tcp_keepalives_idle": 900, "tcp_keepalives_interval": 100,
                        "log_line_prefix": "%t [%p]: [%l-1] %c %x %d %u %a %h ",
                        "log_checkpoints": "on", "log_lock_waits": "on", "log_min_duration_statement": 500,
                        "log_autovacuum_min_duration": 0, "log_connections": "on", "log_disconnections": "on",
                        "log_statement": "ddl", "log_temp_files": 0, "track_functions": "all",
                        "checkpoint_completion_target": 0.9,
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "scope": env.get("SCOPE", "dummy"),
        "restapi": {
            "listen": f":{env.get('APIPORT', '8008')}",
            "connect_address": env.get("RESTAPI_CONNECT_ADDRESS") or f"{host}:{env.get('APIPORT', '8008')}",
        },
        "postgresql": {
            "pgpass": f"{rw}/postgresql/pgpass",
            "use_unix_socket": True,
            "use_unix_socket_repl": True,
            "name": socket.gethostname(),
            "listen": f"*:{env.get('PGPORT', '5432')}",
            "connect_address": env.get("PG_CONNECT_ADDRESS") or f"{host}:{env.get('PGPORT', '5432')}",
            "data_dir": env["PGDATA"],
            "parameters": {
                "archive_command": "/bin/true",
                "shared_buffers": f"{int(mem / 4)}MB",
                "logging_collector": "on", "log_destination": "csvlog", "log_directory": "../pg_log",
                "log_filename": "postgresql-%u.log", "log_file_mode": "0644", "log_rotation_age": "1d",
                "log_truncate_on_rotation": "on",
                "ssl": "on",
                "ssl_cert_file": f"{rw}/certs/server.crt",
                "ssl_key_file": f"{rw}/certs/server.key",
            },
            "pg_hba": hba,
            "authentication": {
                "superuser": {"username": su, "password": env.get("PGPASSWORD_SUPERUSER", "zalando")},
                "replication": {"username": standby, "password": env.get("PGPASSWORD_STANDBY", "standby")},
            },
            "create_replica_methods": ["basebackup"],
            "basebackup": [{"checkpoint": "fast"}],
        },
    }


def write_certificate(rw: str) -> None:
    key, crt = Path(rw, "certs", "server.key"), Path(rw, "certs", "server.crt")
    if key.exists():
        log(f"{key} exists, not overwriting")
        return
    subprocess.run(["openssl", "req", "-nodes", "-new", "-x509", "-days", "3650", "-subj", "/CN=spilo.example.org",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    os.chmod(key, 0o600)
    if os.getuid() == 0:
        import pwd

        os.chown(key, pwd.getpwnam("postgres").pw_uid, -1)
    log("self-signed certificate written")


def main() -> int:
    env = dict(os.environ)
    env.setdefault("RW_DIR", "/run")
    config = template(env)
    dcs = dcs_config(env)
    if not dcs:
        print("configure_standin: no DCS in the environment (ETCD3_HOSTS, ...): Spilo would start an embedded "
              "etcd here, which this stand-in does not have", file=sys.stderr)
        return 1
    config.update(dcs)
    user = yaml.safe_load(env.get("SPILO_CONFIGURATION", env.get("PATRONI_CONFIGURATION", "")) or "") or {}
    if not isinstance(user, dict):
        print(f"configure_standin: SPILO_CONFIGURATION should contain a mapping, not a {type(user).__name__}",
              file=sys.stderr)
        return 1
    config = deep_update(user, config)
    config["postgresql"].setdefault("bin_dir", bin_dir(config["postgresql"]["data_dir"]))

    write_certificate(env["RW_DIR"])
    target = Path(env["RW_DIR"], "postgres.yml")
    if target.exists():
        log(f"{target} exists, not overwriting (recreate the container to apply a new environment)")
    else:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, default_flow_style=False, width=120))
        os.chmod(tmp, 0o600)
        if os.getuid() == 0:
            import pwd

            os.chown(tmp, pwd.getpwnam("postgres").pw_uid, -1)
        os.replace(tmp, target)
        log(f"{target} written (scope {config['scope']}, member {config['postgresql']['name']}, "
            f"{next(iter(dcs))} {dcs[next(iter(dcs))].get('hosts')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
