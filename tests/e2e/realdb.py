"""The database tier and the cache with their real programs in the e2e stack.

etcd, Spilo (Patroni + PostgreSQL 17), HAProxy and Valkey cannot be pulled; this module builds
local images from Debian root filesystems (:mod:`.rootfs`) that carry each upstream image's
facts the shipped compose files rely on, so that their **shipped** ``entrypoint``, ``command``
and ``healthcheck`` run unchanged:

==========  ============================================  ==========================================
service     upstream image                                 facts mirrored here
==========  ============================================  ==========================================
etcd        gcr.io/etcd-development/etcd (distroless)      ``/usr/local/bin/etcd`` (the CMD) and
                                                           ``/usr/local/bin/etcdctl``; ``ETCD_*``
                                                           variables; root; workdir /var/lib/etcd
spilo-1/2,  ghcr.io/zalando/spilo-17                       ``/bin/sh /launch.sh init`` (a stand-in
postgres-                                                  for Spilo's configuration step, then the
init                                                       real Patroni: see images/spilo-launch.sh);
                                                           postgres 101:103; PGHOME, PGROOT, PGDATA,
                                                           RW_DIR as in Spilo's Dockerfile; curl,
                                                           psql, bash; REST API on 8008; patronictl
                                                           configured as in Spilo
haproxy     haproxy (official)                             ``docker-entrypoint.sh`` + CMD ``haproxy -f
                                                           /usr/local/etc/haproxy/haproxy.cfg``; user
                                                           haproxy 99:99; bash; STOPSIGNAL SIGUSR1
valkey      valkey/valkey                                  ``docker-entrypoint.sh`` (chown of /data,
                                                           setpriv to 999:999) + CMD valkey-server;
                                                           valkey-cli; workdir /data
==========  ============================================  ==========================================

The choice is by the upstream repository name, so every service on an ``haproxy`` image (the
gateway's Docker API proxy too) runs the real HAProxy with its own shipped configuration.
Versions are Debian's (etcd 3.5.16, PostgreSQL 17, Patroni 4.0.7, Valkey 8.1.1; HAProxy 3.2
from unstable), not the pinned ones; the override (``service_override``) swaps the image and
shortens the healthcheck interval, nothing else.

Whether the suite uses these images or the busybox stand-ins is decided once per process
(:func:`enabled`): real programs whenever every rootfs exists or can be built here; otherwise
the stand-ins, and the database scenarios skip with the reason, except in CI (``CI`` truthy),
where that is an error. ``READINESS_E2E_REAL_DB=0`` chooses the stand-ins.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from . import rootfs

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
REAL_DB_ENV = "READINESS_E2E_REAL_DB"

#: Upstream repository name -> kind (= rootfs recipe).
KINDS = {"etcd": "etcd", "haproxy": "haproxy", "valkey": "valkey"}
SPILO_NAME = re.compile(r"spilo(-\d+)?")

#: Healthcheck timing of the real programs in the e2e run: probe every 2 s (the shipped 10 s
#: would make every boot wait for a first probe), but keep the shipped timeout, retries and
#: start_period: initdb and pg_basebackup need the shipped margins on a loaded 2-core machine.
FAST_INTERVAL = "2s"


class DBTierUnavailable(RuntimeError):
    """The real database tier cannot run here (and this is CI, where that is an error)."""


def kind_of(image: str) -> str | None:
    """Which real program replaces an upstream image, by its repository name (availability aside)."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if SPILO_NAME.fullmatch(name):
        return "spilo"
    return KINDS.get(name)


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str:
    """'' when the real programs will be used, else why not (decided once per process)."""
    if os.environ.get(REAL_DB_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return f"{REAL_DB_ENV}=0 chooses the busybox stand-ins for the database tier and the cache"
    reasons = [r for r in rootfs.availability().values() if r]
    if not reasons:
        return ""
    reason = reasons[0] + (f" (and {len(reasons) - 1} more rootfs)" if len(reasons) > 1 else "")
    if rootfs.ci():
        raise DBTierUnavailable(f"CI runs the real database tier, but {reason}. Prebuild the tarballs as root: "
                                "`python -m tests.e2e.rootfs build`")
    return reason


def enabled() -> bool:
    return unavailable_reason() == ""


def real_kind(image: str) -> str | None:
    """:func:`kind_of`, when the real programs are used in this process."""
    kind = kind_of(image)
    return kind if kind and enabled() else None


# ------------------------------------------------------------------ images


ETCD_DOCKERFILE = """FROM {base}
COPY rootfs/ /
WORKDIR /var/lib/etcd
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 2379 2380
CMD ["/usr/local/bin/etcd"]
"""

SPILO_DOCKERFILE = """FROM {base}
COPY rootfs/ /
ENV PGVERSION=17 PGHOME=/home/postgres RW_DIR=/run LC_ALL=C.UTF-8 \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/17/bin
ENV PGROOT=/home/postgres/pgdata/pgroot
ENV PGDATA=/home/postgres/pgdata/pgroot/data PGLOG=/home/postgres/pgdata/pgroot/pg_log
WORKDIR /home/postgres
EXPOSE 5432 8008 8080
CMD ["/bin/sh", "/launch.sh", "init"]
"""

HAPROXY_DOCKERFILE = """FROM {base}
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
STOPSIGNAL SIGUSR1
ENTRYPOINT ["docker-entrypoint.sh"]
USER haproxy
WORKDIR /var/lib/haproxy
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
"""

VALKEY_DOCKERFILE = """FROM {base}
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["valkey-server"]
"""


def _files(kind: str, rootfs_cls) -> tuple[Any, str]:
    """The files each image adds to its Debian rootfs, and its Dockerfile."""
    fs = rootfs_cls()
    if kind == "etcd":
        fs.links["usr/local/bin/etcd"] = "/usr/bin/etcd"
        fs.links["usr/local/bin/etcdctl"] = "/usr/bin/etcdctl"
        fs.links["usr/local/bin/etcdutl"] = "/usr/bin/etcdutl"
        return fs, ETCD_DOCKERFILE
    if kind == "spilo":
        fs.add("/launch.sh", (IMAGES / "spilo-launch.sh").read_bytes(), 0o755)
        fs.add("/scripts/configure_standin.py", (IMAGES / "spilo-configure.py").read_bytes(), 0o755)
        # Spilo's home is /home/postgres (its passwd entry is edited at build time), and
        # patronictl reads the generated Patroni configuration without arguments.
        for home in ("root", "home/postgres"):
            fs.links[f"{home}/.config/patroni/patronictl.yaml"] = "/run/postgres.yml"
        fs.links["home/postgres/postgres.yml"] = "/run/postgres.yml"  # (and /var/tmp -> /run/tmp: rootfs.py)
        return fs, SPILO_DOCKERFILE
    if kind == "haproxy":
        fs.add("/usr/local/bin/docker-entrypoint.sh", (IMAGES / "haproxy-entrypoint.sh").read_bytes(), 0o755)
        fs.links["usr/local/sbin/haproxy"] = "/usr/sbin/haproxy"
        return fs, HAPROXY_DOCKERFILE
    if kind == "valkey":
        fs.add("/usr/local/bin/docker-entrypoint.sh", (IMAGES / "valkey-entrypoint.sh").read_bytes(), 0o755)
        return fs, VALKEY_DOCKERFILE
    raise ValueError(kind)


def build_images(model: dict[str, Any], build, rootfs_cls, log=print) -> dict[str, str]:
    """Service -> local image for every service whose upstream image has a real program here.

    ``build`` and ``rootfs_cls`` are :func:`stack.build` and :class:`stack.RootFS` (passed in,
    so this module does not import stack.py, which imports it)."""
    kinds = {svc: kind_of(str(spec.get("image", ""))) for svc, spec in model["services"].items()}
    tags: dict[str, str] = {}
    for kind in sorted({k for k in kinds.values() if k}):
        base = rootfs.ensure_image(kind, log=log)
        fs, dockerfile = _files(kind, rootfs_cls)
        tags[kind] = build(f"real-{kind}", fs, dockerfile.format(base=base))
    return {svc: tags[kind] for svc, kind in kinds.items() if kind}


# ------------------------------------------------------------------ override


def healthcheck(shipped: dict[str, Any], fast: bool) -> dict[str, Any]:
    """The shipped healthcheck; in the e2e run with a 2 s interval (timeout, retries and
    start_period as shipped)."""
    out = dict(shipped)
    if fast:
        out["interval"] = FAST_INTERVAL
    return out


def service_override(spec: dict[str, Any], image: str, fast: bool) -> dict[str, Any]:
    """Only ``image`` (and the healthcheck interval): entrypoint and command stay as shipped."""
    out: dict[str, Any] = {"image": image}
    if spec.get("healthcheck"):
        out["healthcheck"] = healthcheck(spec["healthcheck"], fast)
    return out
