#!/usr/bin/env python3
"""Checks the deployment files in deploy/ mechanically (no Docker engine needed).

    scripts/check-deploy.py [--deploy DIR] [--config-rs FILE] [--openapi FILE] [--metrics-rs FILE]
    scripts/check-deploy.py --self-test

What it checks:
- every YAML file parses (all documents of it), every TOML configuration parses;
- configuration keys: every key of deploy/crosslink.toml and of the ConfigMap's
  crosslink.toml, and every environment variable named CROSSLINK..., names a real
  setting. The settings are read from crates/api/src/config.rs (the Settings
  structs and DEFAULTS) at run time; environment names must be
  CROSSLINK__SECTION__KEY (or CROSSLINK__MODE);
- ports: the port the service listens on (server.bind of the configuration each
  runtime uses, or its CROSSLINK__SERVER__BIND) is the Dockerfile's EXPOSE and
  HEALTHCHECK port, the Kubernetes containerPort, the probes' port and the
  Service's targetPort, the container side of each compose port mapping and the
  compose health checks; the bind address is not loopback where something
  outside the process must reach it;
- probes: liveness on /healthz, readiness on /readyz, both operations of the
  OpenAPI document (read at run time);
- secrets: the JWT secret and the encryption key come from the Secret, every
  secretKeyRef names a Secret and key that exist, the ConfigMap is mounted where
  --config points;
- commands: the Deployment and the compose replicas run `crosslink serve`, the
  Job and the compose one-shot run `crosslink migrate`; the systemd unit's
  ExecStart names the crosslink binary and `serve`; the image is multi-stage,
  built with the rust image and run on debian-slim as a non-root user;
- dashboards: every deploy/grafana/*.json parses, and every metric name its
  panels' PromQL expressions use is one the service exports (the EXPORTED list
  of crates/api/src/metrics.rs, which a unit test keeps equal to the registry;
  a histogram's series add _bucket, _sum and _count); every crosslink_* family
  is shown by some panel.

--self-test copies deploy/ to a temporary folder, checks that the copy passes,
then breaks it in one way at a time and checks that each break is reported.
Exit status: 0 when everything holds, 1 on any finding, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV_RE = re.compile(r"^CROSSLINK__([A-Z0-9_]+?)(?:__([A-Z0-9_]+))?$")
CONTAINER_CONFIG = "/etc/crosslink/crosslink.toml"


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        item = " ".join(f"{where}: {message}".split())
        if item not in self.items:
            self.items.append(item)

    def check(self, ok: bool, where: str, message: str) -> bool:
        if not ok:
            self.add(where, message)
        return ok


# ---------------------------------------------------------------- settings


def settings_from_source(config_rs: Path) -> tuple[set[str], dict[str, str]]:
    """The setting keys ("section.key", "mode") and DEFAULTS, from config.rs."""
    text = config_rs.read_text()
    structs: dict[str, list[tuple[str, str]]] = {}
    for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
        fields = re.findall(r"^\s*pub (\w+):\s*([\w<>:]+)", m.group(2), re.M)
        structs[m.group(1)] = fields
    keys: set[str] = set()
    for field, ty in structs.get("Settings", []):
        if ty in structs:
            keys.update(f"{field}.{sub}" for sub, _ in structs[ty])
        else:
            keys.add(field)
    defaults: dict[str, str] = {}
    block = re.search(r"pub const DEFAULTS[^=]*=\s*&\[(.*?)\];", text, re.S)
    if block:
        for k, v in re.findall(r'\(\s*"([^"]+)"\s*,\s*"([^"]*)"\s*\)', block.group(1)):
            defaults[k] = v
    return keys, defaults


def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
            if not v:
                out.setdefault(name + ".", None)  # an empty table: its name only
        else:
            out[name] = v
    return out


def env_key(name: str) -> str | None:
    """CROSSLINK__SECTION__KEY -> section.key (None when malformed)."""
    m = ENV_RE.match(name)
    if not m:
        return None
    section, key = m.group(1), m.group(2)
    return f"{section.lower()}.{key.lower()}" if key else section.lower()


class Settings:
    def __init__(self, config_rs: Path, f: Findings) -> None:
        self.keys, self.defaults = settings_from_source(config_rs)
        self.sections = {k.split(".")[0] for k in self.keys if "." in k}
        f.check(len(self.keys) >= 10, str(config_rs), f"found only {len(self.keys)} setting keys; is the parser out of date?")
        for k in self.defaults:
            f.check(k in self.keys, str(config_rs), f"DEFAULTS names {k}, which no Settings struct has")

    def check_env(self, name: str, where: str, f: Findings) -> None:
        if not name.startswith("CROSSLINK"):
            return
        key = env_key(name)
        if key is None:
            f.add(where, f"environment variable {name} does not follow CROSSLINK__SECTION__KEY")
        elif key not in self.keys:
            f.add(where, f"environment variable {name} names no setting ({key})")

    def check_toml(self, text: str, where: str, f: Findings) -> dict | None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            f.add(where, f"does not parse as TOML: {e}")
            return None
        for key in flatten(data):
            section = key.split(".")[0]
            if "." in key and section not in self.sections:
                f.add(where, f"[{section}] is no section of the settings ({', '.join(sorted(self.sections))})")
            elif not key.endswith("."):
                f.check(key in self.keys, where, f"{key} is no setting")
        return data


def bind_of(config: dict | None, env: dict[str, str], defaults: dict[str, str]) -> str:
    """The effective server.bind: environment > file > built-in default."""
    if "CROSSLINK__SERVER__BIND" in env:
        return str(env["CROSSLINK__SERVER__BIND"])
    if config and isinstance(config.get("server"), dict) and "bind" in config["server"]:
        return str(config["server"]["bind"])
    return defaults.get("server.bind", "127.0.0.1:8080")


def split_bind(bind: str) -> tuple[str, int | None]:
    m = re.match(r"^\[?([^\]]*?)\]?:(\d+)$", bind)
    if not m:
        return bind, None
    return m.group(1), int(m.group(2))


def check_bind_reachable(bind: str, where: str, f: Findings) -> int | None:
    host, port = split_bind(bind)
    if port is None:
        f.add(where, f"server.bind {bind!r} is not HOST:PORT")
        return None
    f.check(
        host not in ("127.0.0.1", "localhost", "::1"),
        where,
        f"server.bind {bind} listens on loopback only: probes and other containers cannot reach it (use 0.0.0.0:{port})",
    )
    return port


# ---------------------------------------------------------------- loading


def load_yaml(path: Path, f: Findings) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        f.add(str(path), f"does not parse as YAML: {e}")
        return []
    for d in docs:
        f.check(isinstance(d, dict), str(path), "a YAML document is not a mapping")
    return [d for d in docs if isinstance(d, dict)]


def openapi_paths(openapi: Path, f: Findings) -> set[str]:
    try:
        return set(json.loads(openapi.read_text()).get("paths", {}))
    except (OSError, ValueError) as e:
        f.add(str(openapi), f"cannot read the OpenAPI document: {e}")
        return set()


def config_path_of(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def subcommand_of(args: list[str]) -> str | None:
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--config":
            skip = True
            continue
        if a.startswith("-") or a.endswith("/crosslink") or a == "crosslink":
            continue
        return a
    return None


# ---------------------------------------------------------------- Dockerfile


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def exec_form(arg: str) -> list[str]:
    arg = arg.strip()
    if arg.startswith("["):
        try:
            return [str(x) for x in json.loads(arg)]
        except ValueError:
            return []
    return shlex.split(arg)


def check_dockerfile(deploy: Path, settings: Settings, f: Findings) -> dict:
    path = deploy / "Dockerfile"
    w = str(path)
    if not f.check(path.is_file(), w, "missing"):
        return {}
    instr = parse_dockerfile(path)
    args = {}
    for word, rest in instr:
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k.strip()] = v.strip()

    def expand(s: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), s)

    froms = [expand(rest).split()[0] for word, rest in instr if word == "FROM"]
    f.check(len(froms) >= 2, w, f"not multi-stage: {len(froms)} FROM line(s)")
    if froms:
        f.check(froms[0].startswith("rust:"), w, f"the build stage is {froms[0]}, not the rust image")
        f.check(re.match(r"^debian:[\w.-]*slim$", froms[-1]) is not None, w, f"the run stage is {froms[-1]}, not debian-slim")
    # The final stage: instructions after the last FROM.
    last = max(i for i, (word, _) in enumerate(instr) if word == "FROM") if froms else 0
    final = instr[last:]
    users = [rest for word, rest in final if word == "USER"]
    f.check(bool(users), w, "the run stage sets no USER (it would run as root)")
    if users:
        user = users[-1].split(":")[0]
        f.check(user not in ("root", "0"), w, f"the run stage runs as {users[-1]}")
    env: dict[str, str] = {}
    for word, rest in final:
        if word == "ENV":
            for part in shlex.split(rest):
                if "=" in part:
                    k, v = part.split("=", 1)
                    env[k] = v
    for name in env:
        settings.check_env(name, w, f)
    entry = next((exec_form(rest) for word, rest in reversed(final) if word == "ENTRYPOINT"), [])
    cmd = next((exec_form(rest) for word, rest in reversed(final) if word == "CMD"), [])
    full = entry + cmd
    f.check(any(Path(a).name == "crosslink" for a in full[:1]), w, f"ENTRYPOINT/CMD {full} does not start the crosslink binary")
    f.check(subcommand_of(full) == "serve", w, f"ENTRYPOINT/CMD {full} does not run `crosslink serve`")
    config_path = config_path_of(full)
    baked: dict | None = None
    if config_path:
        # COPY SRC DEST of the configuration file into the image.
        for word, rest in final:
            if word == "COPY" and not rest.startswith("--from"):
                parts = rest.split()
                if len(parts) == 2 and parts[1] == config_path:
                    src = ROOT / parts[0]
                    if parts[0].startswith("deploy/"):
                        src = deploy / parts[0][len("deploy/"):]
                    if f.check(src.is_file(), w, f"COPY {parts[0]}: no such file"):
                        baked = settings.check_toml(src.read_text(), str(src), f)
        f.check(baked is not None, w, f"--config {config_path} is not a configuration file copied into the image")
    bind = bind_of(baked, env, settings.defaults)
    port = check_bind_reachable(bind, w + " (the image's configuration)", f)
    exposed = [int(p.split("/")[0]) for word, rest in final if word == "EXPOSE" for p in rest.split()]
    f.check(bool(exposed), w, "no EXPOSE")
    if port is not None and exposed:
        f.check(port in exposed, w, f"EXPOSE {exposed} does not match server.bind {bind}")
    for word, rest in final:
        if word == "HEALTHCHECK" and "CMD" in rest:
            for url in re.findall(r"https?://[^\s\"']+", rest):
                m = re.match(r"https?://[^/:]+:(\d+)(/[^\s\"']*)?", url)
                f.check(m is not None and int(m.group(1)) == port, w, f"HEALTHCHECK {url} is not on port {port}")
                if m:
                    f.check((m.group(2) or "/") in ("/healthz", "/readyz"), w, f"HEALTHCHECK {url} is no probe")
    return {"config_path": config_path, "port": port, "entrypoint": entry, "cmd": cmd}


# ---------------------------------------------------------------- compose


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def as_args(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(x) for x in value]
    return shlex.split(str(value))


def check_compose(deploy: Path, settings: Settings, image: dict, f: Findings) -> None:
    paths = [p for p in (deploy / "compose.yaml", deploy / "docker-compose.yml", deploy / "compose.yml") if p.is_file()]
    if not f.check(bool(paths), str(deploy), "no compose file"):
        return
    path = paths[0]
    w = str(path)
    docs = load_yaml(path, f)
    if not docs:
        return
    services = docs[0].get("services") or {}
    if not f.check(isinstance(services, dict) and services, w, "no services"):
        return
    pg = [n for n, s in services.items() if "postgres" in str(s.get("image", ""))]
    f.check(bool(pg), w, "no PostgreSQL service")
    replicas, migrators = [], []
    oneshots = [
        n
        for n, s in services.items()
        if subcommand_of((as_args(s.get("entrypoint")) or image.get("entrypoint", [])) + as_args(s.get("command"))) == "migrate"
    ]
    for name, svc in services.items():
        where = f"{w} services.{name}"
        env = compose_env(svc)
        for k in env:
            settings.check_env(k, where, f)
        is_crosslink = "build" in svc or "crosslink" in str(svc.get("image", "")).split(":")[0]
        if not is_crosslink:
            continue
        entry = as_args(svc.get("entrypoint")) or image.get("entrypoint", [])
        cmd = as_args(svc.get("command")) if "command" in svc else image.get("cmd", [])
        sub = subcommand_of(entry + cmd)
        if sub == "migrate":
            migrators.append(name)
            f.check(str(svc.get("restart", "no")) == "no", where, "the migration service must run once (restart: \"no\")")
            continue
        if sub != "serve":
            f.add(where, f"runs `crosslink {sub}`, neither serve nor migrate")
            continue
        replicas.append(name)
        # The configuration this container uses: the image's (deploy/crosslink.toml) + env.
        config = None
        cp = config_path_of(entry + cmd) or image.get("config_path")
        if cp == CONTAINER_CONFIG and (deploy / "crosslink.toml").is_file():
            config = tomllib.loads((deploy / "crosslink.toml").read_text())
        bind = bind_of(config, env, settings.defaults)
        port = check_bind_reachable(bind, where, f)
        if port is None:
            continue
        if image.get("port") is not None:
            f.check(port == image["port"], where, f"listens on {port}, the image EXPOSEs {image['port']}")
        ports = svc.get("ports") or []
        f.check(bool(ports), where, "publishes no port")
        for p in ports:
            if isinstance(p, dict):
                target = int(p.get("target", 0))
            else:
                target = int(str(p).split("/")[0].rsplit(":", 1)[-1].split("-")[0])
            f.check(target == port, where, f"port mapping {p} does not lead to the service's port {port} (server.bind {bind})")
        hc = svc.get("healthcheck") or {}
        for url in re.findall(r"https?://[^\s\"',\]]+", " ".join(as_args(hc.get("test")))):
            m = re.match(r"https?://[^/:]+:(\d+)(/\S*)?", url)
            f.check(m is not None and int(m.group(1)) == port, where, f"health check {url} is not on port {port}")
            if m:
                f.check((m.group(2) or "/") in ("/healthz", "/readyz"), where, f"health check {url} is no probe")
        url = env.get("CROSSLINK__DATABASE__URL", "")
        if url:
            host = re.sub(r"^\w+://([^@/]*@)?([^:/]+).*$", r"\2", url)
            f.check(host in services, where, f"the database URL's host {host} is no compose service")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, dict):
            for m_name in oneshots:
                cond = (deps.get(m_name) or {}).get("condition")
                f.check(cond == "service_completed_successfully", where, f"does not wait for {m_name} to complete")
    f.check(len(replicas) >= 3, w, f"{len(replicas)} crosslink serve replica(s), want 3")
    f.check(len(migrators) == 1, w, f"{len(migrators)} one-shot migrate service(s), want 1")


# ---------------------------------------------------------------- Kubernetes


def k8s_objects(deploy: Path, f: Findings) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((deploy / "k8s").glob("*.y*ml")):
        for doc in load_yaml(path, f):
            if "kind" in doc and "apiVersion" in doc:
                out.append((path, doc))
            elif doc.get("kind") != "Kustomization":
                f.add(str(path), "a document without kind and apiVersion")
    return out


def check_k8s(deploy: Path, settings: Settings, api_paths: set[str], image: dict, f: Findings) -> None:
    if not f.check((deploy / "k8s").is_dir(), str(deploy), "no k8s/ folder"):
        return
    objs = k8s_objects(deploy, f)
    by_kind: dict[str, list[tuple[Path, dict]]] = {}
    for path, o in objs:
        by_kind.setdefault(o["kind"], []).append((path, o))
    for kind in ("Deployment", "Service", "ConfigMap", "Secret", "Job"):
        f.check(kind in by_kind, str(deploy / "k8s"), f"no {kind}")
    kust = deploy / "k8s" / "kustomization.yaml"
    if kust.is_file():
        docs = load_yaml(kust, f)
        listed = set(docs[0].get("resources", [])) if docs else set()
        for path in sorted((deploy / "k8s").glob("*.y*ml")):
            if path.name != kust.name:
                f.check(path.name in listed, str(kust), f"does not list {path.name}")
        for name in listed:
            f.check((deploy / "k8s" / name).is_file(), str(kust), f"lists {name}, which does not exist")

    configmaps = {o["metadata"]["name"]: (p, o) for p, o in by_kind.get("ConfigMap", [])}
    secrets: dict[str, set[str]] = {}
    for _, o in by_kind.get("Secret", []):
        secrets[o["metadata"]["name"]] = set((o.get("data") or {}) | (o.get("stringData") or {}))
    cm_configs: dict[tuple[str, str], dict | None] = {}
    for name, (p, o) in configmaps.items():
        for key, text in (o.get("data") or {}).items():
            if key.endswith(".toml"):
                cm_configs[(name, key)] = settings.check_toml(text, f"{p} ConfigMap {name} {key}", f)

    for kind in ("Deployment", "Job"):
        for path, o in by_kind.get(kind, []):
            name = o["metadata"]["name"]
            spec = o["spec"]["template"]["spec"]
            where = f"{path} {kind} {name}"
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            pod_sc = spec.get("securityContext") or {}
            for c in spec.get("containers", []):
                cw = f"{where} container {c['name']}"
                csc = c.get("securityContext") or {}
                f.check(
                    (csc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True)
                    and (csc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0),
                    cw,
                    "does not run as non-root (runAsNonRoot: true)",
                )
                env: dict[str, str] = {}
                secret_env: dict[str, tuple[str, str]] = {}
                for e in c.get("env", []):
                    settings.check_env(e["name"], cw, f)
                    env[e["name"]] = str(e.get("value", ""))
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        secret_env[e["name"]] = (ref["name"], ref["key"])
                        f.check(ref["name"] in secrets, cw, f"{e['name']} refers to Secret {ref['name']}, which is not defined")
                        f.check(ref["key"] in secrets.get(ref["name"], set()), cw, f"{e['name']} refers to key {ref['key']} that Secret {ref['name']} lacks")
                    cref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                    if cref:
                        f.check(cref["name"] in configmaps, cw, f"{e['name']} refers to ConfigMap {cref['name']}, which is not defined")
                if c.get("envFrom"):
                    f.add(cw, "envFrom hides which settings are set; list the CROSSLINK__ variables one by one")
                args = as_args(c.get("command")) or image.get("entrypoint", [])
                args = args + (as_args(c.get("args")) if "args" in c else ([] if "command" in c else image.get("cmd", [])))
                sub = subcommand_of(args)
                want = "serve" if kind == "Deployment" else "migrate"
                f.check(sub == want, cw, f"runs `crosslink {sub}`, want `crosslink {want}`")
                f.check("CROSSLINK__SECRETS__ENCRYPTION_KEY" in secret_env, cw, "the encryption key does not come from a Secret (CROSSLINK__SECRETS__ENCRYPTION_KEY)")
                f.check("CROSSLINK__DATABASE__URL" in secret_env, cw, "the database URL does not come from a Secret (CROSSLINK__DATABASE__URL)")
                if kind == "Deployment":
                    f.check("CROSSLINK__AUTH__HS256_SECRET" in secret_env, cw, "the JWT secret does not come from a Secret (CROSSLINK__AUTH__HS256_SECRET)")
                # Which configuration the container reads: --config PATH, from a mounted ConfigMap.
                cpath = config_path_of(args)
                config = None
                if f.check(cpath is not None, cw, "no --config: the ConfigMap would not be read"):
                    found = False
                    for m in c.get("volumeMounts", []):
                        v = volumes.get(m["name"])
                        if not v or "configMap" not in v:
                            continue
                        mount = m["mountPath"].rstrip("/")
                        sub_path = m.get("subPath")
                        cm = v["configMap"]["name"]
                        key = sub_path if sub_path else (cpath[len(mount) + 1:] if cpath.startswith(mount + "/") else None)
                        if sub_path and mount != cpath:
                            continue
                        if key is None:
                            continue
                        if f.check(cm in configmaps, cw, f"mounts ConfigMap {cm}, which is not defined") and f.check(
                            (cm, key) in cm_configs, cw, f"--config {cpath}: ConfigMap {cm} has no key {key}"
                        ):
                            config = cm_configs[(cm, key)]
                            found = True
                    f.check(found, cw, f"--config {cpath} is not a file of a mounted ConfigMap")
                if config is not None:
                    f.check(config.get("mode") == "production", cw, "the ConfigMap's configuration is not mode = \"production\"")
                bind = bind_of(config, env, settings.defaults)
                if kind != "Deployment":
                    continue
                port = check_bind_reachable(bind, cw, f)
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                f.check(bool(ports), cw, "declares no containerPort")
                for pname, cport in ports.items():
                    f.check(cport == port, cw, f"containerPort {cport} ({pname}) does not match server.bind {bind}")
                if image.get("port") is not None and port is not None:
                    f.check(port == image["port"], cw, f"listens on {port}, the image EXPOSEs {image['port']}")

                def probe(kind_: str, want_path: str) -> None:
                    p = c.get(kind_)
                    if not f.check(p is not None, cw, f"no {kind_}"):
                        return
                    http = p.get("httpGet")
                    if not f.check(http is not None, cw, f"{kind_} is not an httpGet probe"):
                        return
                    f.check(http.get("path") == want_path, cw, f"{kind_} path {http.get('path')} is not {want_path}")
                    f.check(http.get("path") in api_paths, cw, f"{kind_} path {http.get('path')} is no operation of openapi/openapi.json")
                    pp = http.get("port")
                    resolved = ports.get(pp) if isinstance(pp, str) else pp
                    f.check(resolved is not None, cw, f"{kind_} port {pp!r} names no container port")
                    f.check(resolved == port, cw, f"{kind_} port {pp!r} ({resolved}) does not match server.bind {bind}")

                probe("livenessProbe", "/healthz")
                probe("readinessProbe", "/readyz")
                labels = (o["spec"]["template"].get("metadata") or {}).get("labels") or {}
                for spath, svc in by_kind.get("Service", []):
                    sel = svc["spec"].get("selector") or {}
                    if sel and all(labels.get(k) == v for k, v in sel.items()):
                        for sp in svc["spec"].get("ports", []):
                            t = sp.get("targetPort", sp.get("port"))
                            resolved = ports.get(t) if isinstance(t, str) else t
                            f.check(resolved == port, f"{spath} Service {svc['metadata']['name']}", f"targetPort {t!r} ({resolved}) does not reach the container's port {port}")
                        break
                else:
                    f.add(where, "no Service selects these pods")


# ---------------------------------------------------------------- systemd


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
        elif "=" in line and current:
            k, v = line.split("=", 1)
            sections[current].append((k.strip(), v.strip()))
    return sections


def check_systemd(deploy: Path, settings: Settings, f: Findings) -> None:
    units = sorted((deploy / "systemd").glob("*.service"))
    if not f.check(bool(units), str(deploy), "no systemd unit"):
        return
    for path in units:
        w = str(path)
        unit = parse_unit(path.read_text())
        svc = dict(unit.get("Service", []))
        f.check("Unit" in unit and "Install" in unit, w, "lacks [Unit] or [Install]")
        exec_start = [v for k, v in unit.get("Service", []) if k == "ExecStart"]
        if not f.check(len(exec_start) == 1, w, f"{len(exec_start)} ExecStart lines, want 1"):
            continue
        argv = shlex.split(exec_start[0].lstrip("-@:+!"))
        f.check(bool(argv) and argv[0].startswith("/"), w, f"ExecStart {exec_start[0]!r} does not give the binary's absolute path")
        f.check(bool(argv) and Path(argv[0]).name == "crosslink", w, f"ExecStart {exec_start[0]!r} does not run the crosslink binary")
        f.check(subcommand_of(argv) == "serve", w, f"ExecStart {exec_start[0]!r} does not run `crosslink serve`")
        user = svc.get("User")
        f.check(svc.get("DynamicUser") == "yes" or (user not in (None, "root", "0")), w, "runs as root (set User= or DynamicUser=yes)")
        for k, v in unit.get("Service", []):
            if k == "Environment":
                for part in shlex.split(v):
                    settings.check_env(part.split("=", 1)[0], w, f)
        cpath = config_path_of(argv)
        if cpath:
            f.check(cpath == CONTAINER_CONFIG, w, f"--config {cpath}: the example configuration installs to {CONTAINER_CONFIG}")
            if (deploy / "crosslink.toml").is_file():
                config = tomllib.loads((deploy / "crosslink.toml").read_text())
                env = {}
                for k, v in unit.get("Service", []):
                    if k == "Environment":
                        for part in shlex.split(v):
                            a, _, b = part.partition("=")
                            env[a] = b
                _, port = split_bind(bind_of(config, env, settings.defaults))
                f.check(port is not None, w, "the configuration's server.bind has no port")


# ---------------------------------------------------------------- dashboards


def exported_metrics(metrics_rs: Path, f: Findings) -> dict[str, str]:
    """{family name: type} from the EXPORTED list of metrics.rs."""
    try:
        text = metrics_rs.read_text()
    except OSError as e:
        f.add(str(metrics_rs), f"cannot read the exported metric names: {e}")
        return {}
    block = re.search(r"pub const EXPORTED:[^=]*=\s*&\[(.*?)\];", text, re.S)
    found = dict(re.findall(r'\(\s*"(\w+)"\s*,\s*"(\w+)"\s*\)', block.group(1))) if block else {}
    f.check(len(found) >= 5, str(metrics_rs), f"found only {len(found)} exported metrics in EXPORTED; is the parser out of date?")
    return found


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings,
    label matchers, ranges, grouping clauses, Grafana variables, numbers and
    function names are taken out."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def series_family(name: str, exported: dict[str, str]) -> str | None:
    """The exported family a series name belongs to (None: unknown)."""
    if name in exported:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        stem = name[: -len(suffix)]
        if name.endswith(suffix) and exported.get(stem) == "histogram":
            return stem
    return None


def panel_targets(panels: list) -> list[tuple[str, str]]:
    """(panel title, expression) of every panel, rows' panels included."""
    out = []
    for p in panels:
        if not isinstance(p, dict):
            continue
        for t in p.get("targets") or []:
            if isinstance(t, dict) and t.get("expr"):
                out.append((str(p.get("title", "?")), str(t["expr"])))
        out.extend(panel_targets(p.get("panels") or []))
    return out


def check_dashboards(deploy: Path, metrics_rs: Path, f: Findings) -> None:
    paths = sorted((deploy / "grafana").glob("*.json"))
    if not f.check(bool(paths), str(deploy / "grafana"), "no Grafana dashboard (*.json)"):
        return
    exported = exported_metrics(metrics_rs, f)
    if not exported:
        return
    shown: set[str] = set()
    for path in paths:
        w = str(path)
        try:
            dash = json.loads(path.read_text())
        except ValueError as e:
            f.add(w, f"does not parse as JSON: {e}")
            continue
        if not f.check(isinstance(dash, dict) and isinstance(dash.get("panels"), list), w, "is no dashboard (no panels list)"):
            continue
        targets = panel_targets(dash["panels"])
        f.check(bool(targets), w, "no panel has a PromQL expression")
        for title, expr in targets:
            for name in sorted(promql_metric_names(expr)):
                family = series_family(name, exported)
                if f.check(family is not None, w, f"panel {title!r} uses {name}, which is no metric the service exports ({metrics_rs.name} EXPORTED)"):
                    shown.add(family)
    for name in sorted(exported):
        if name.startswith("crosslink_"):
            f.check(name in shown, str(deploy / "grafana"), f"no panel shows {name}")


# ---------------------------------------------------------------- main

def run_checks(deploy: Path, config_rs: Path, openapi: Path, metrics_rs: Path | None = None) -> list[str]:
    f = Findings()
    if not deploy.is_dir():
        f.add(str(deploy), "no such folder")
        return f.items
    settings = Settings(config_rs, f)
    api_paths = openapi_paths(openapi, f)
    for must in ("/healthz", "/readyz"):
        f.check(must in api_paths, str(openapi), f"has no {must}")
    for path in sorted(deploy.rglob("*.y*ml")):
        load_yaml(path, f)
    example = deploy / "crosslink.toml"
    if f.check(example.is_file(), str(deploy), "no example crosslink.toml"):
        data = settings.check_toml(example.read_text(), str(example), f)
        if data is not None:
            f.check(data.get("mode") == "production", str(example), "is not mode = \"production\"")
            check_bind_reachable(bind_of(data, {}, settings.defaults), str(example), f)
    image = check_dockerfile(deploy, settings, f)
    check_compose(deploy, settings, image, f)
    check_k8s(deploy, settings, api_paths, image, f)
    check_systemd(deploy, settings, f)
    check_dashboards(deploy, metrics_rs or ROOT / "crates/api/src/metrics.rs", f)
    return f.items


# Each break: (file under deploy/, text that must be there, its replacement,
# a fragment of the finding it must cause).
BREAKS = [
    ("k8s/deployment.yaml", "path: /readyz", "path: /ready", "readinessProbe path /ready"),
    ("k8s/deployment.yaml", "path: /healthz", "path: /readyz", "livenessProbe path /readyz is not /healthz"),
    ("k8s/deployment.yaml", "containerPort: 8080", "containerPort: 9090", "containerPort 9090"),
    ("k8s/deployment.yaml", "port: http", "port: metrics", "names no container port"),
    ("k8s/configmap.yaml", 'bind = "0.0.0.0:8080"', 'bind = "0.0.0.0:8081"', "does not match server.bind 0.0.0.0:8081"),
    ("k8s/configmap.yaml", 'bind = "0.0.0.0:8080"', 'bind = "127.0.0.1:8080"', "loopback"),
    ("k8s/configmap.yaml", "pool_size = 8", "pool_sizes = 8", "database.pool_sizes is no setting"),
    ("k8s/deployment.yaml", "name: CROSSLINK__AUTH__HS256_SECRET", "name: CROSSLINK__AUTH__JWT_SECRET", "CROSSLINK__AUTH__JWT_SECRET names no setting"),
    ("k8s/deployment.yaml", "name: CROSSLINK__DATABASE__URL", "name: CROSSLINK_DATABASE_URL", "does not follow CROSSLINK__SECTION__KEY"),
    ("k8s/deployment.yaml", "key: encryption-key", "key: encryption_key", "lacks"),
    ("k8s/deployment.yaml", '"serve"]', '"migrate"]', "want `crosslink serve`"),
    ("k8s/job-migrate.yaml", '"migrate"]', '"serve"]', "want `crosslink migrate`"),
    ("k8s/service.yaml", "targetPort: http", "targetPort: 8081", "targetPort 8081"),
    ("k8s/deployment.yaml", "mountPath: /etc/crosslink\n", "mountPath: /etc/crosslink-config\n", "is not a file of a mounted ConfigMap"),
    ("k8s/deployment.yaml", "  replicas: 3\n", "  replicas: 3\n    broken: [\n", "does not parse as YAML"),
    ("Dockerfile", "EXPOSE 8080", "EXPOSE 8000", "EXPOSE [8000]"),
    ("Dockerfile", "USER 10001:10001", "USER root", "runs as root"),
    ("Dockerfile", "FROM debian:${DEBIAN_RELEASE}-slim AS run", "FROM debian:${DEBIAN_RELEASE} AS run", "not debian-slim"),
    ("Dockerfile", 'CMD ["serve"]', 'CMD ["openapi"]', "does not run `crosslink serve`"),
    ("compose.yaml", '"8082:8080"', '"8082:9090"', "does not lead to the service's port 8080"),
    ("compose.yaml", 'CROSSLINK__SERVER__BIND: "0.0.0.0:8080"', 'CROSSLINK__SERVER__BIND: "0.0.0.0:9000"', "does not lead to the service's port 9000"),
    ("compose.yaml", "CROSSLINK__LOG__FORMAT: json", "CROSSLINK__LOGGING__FORMAT: json", "CROSSLINK__LOGGING__FORMAT names no setting"),
    ("compose.yaml", "http://127.0.0.1:8080/readyz", "http://127.0.0.1:8081/readyz", "health check http://127.0.0.1:8081/readyz is not on port 8080"),
    ("compose.yaml", 'command: ["serve"]\n    hostname: crosslink-3', 'command: ["openapi"]\n    hostname: crosslink-3', "runs `crosslink openapi`"),
    ("systemd/crosslink.service", "/etc/crosslink/crosslink.toml serve", "/etc/crosslink/crosslink.toml migrate", "does not run `crosslink serve`"),
    ("systemd/crosslink.service", "ExecStart=/usr/local/bin/crosslink", "ExecStart=/usr/local/bin/crosslinkd", "does not run the crosslink binary"),
    ("systemd/crosslink.service", "Environment=CROSSLINK__LOG__FORMAT=json", "Environment=CROSSLINK__LOG__FMT=json", "CROSSLINK__LOG__FMT names no setting"),
    ("crosslink.toml", "[jobs]\n", "[job]\n", "[job] is no section"),
    ("grafana/crosslink.json", "max by (kind) (crosslink_job_queue_depth)", "max by (kind) (crosslink_job_queue_length)", "uses crosslink_job_queue_length, which is no metric the service exports"),
    ("grafana/crosslink.json", "crosslink_webhook_deliveries_total[", "crosslink_webhook_deliveries_total_bucket[", "uses crosslink_webhook_deliveries_total_bucket, which is no metric"),
    ("grafana/crosslink.json", "rate(process_cpu_seconds_total[", "rate(process_cpu_seconds[", "uses process_cpu_seconds, which is no metric"),
    ("grafana/crosslink.json", '"panels": [', '"panels": [,', "does not parse as JSON"),
]


def self_test(deploy: Path, config_rs: Path, openapi: Path) -> int:
    failures = 0
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        pristine = Path(tmp) / "deploy"
        shutil.copytree(deploy, pristine)
        base = run_checks(pristine, config_rs, openapi)
        if base:
            print("self-test: the unbroken copy of deploy/ does not pass:")
            for item in base:
                print(f"  {item}")
            return 1
        for i, (rel, old, new, expect) in enumerate(BREAKS):
            case = Path(tmp) / f"case{i}"
            shutil.copytree(deploy, case)
            target = case / rel
            text = target.read_text()
            if old not in text:
                print(f"self-test FAILED: {rel} no longer contains {old!r}; update BREAKS")
                failures += 1
                continue
            target.write_text(text.replace(old, new, 1))
            found = run_checks(case, config_rs, openapi)
            hit = [x for x in found if expect in x]
            if hit:
                print(f"self-test ok: {rel}: {old.strip()!r} -> {new.strip()!r}: {hit[0].split(': ', 1)[1][:110]}")
            else:
                failures += 1
                print(f"self-test FAILED: {rel}: {old.strip()!r} -> {new.strip()!r} was not reported as {expect!r}; findings: {found}")
        # Wrong settings source: a config.rs without the field makes a real key unknown.
        rs = Path(tmp) / "config.rs"
        rs.write_text(config_rs.read_text().replace("pub max_body_bytes: usize,", ""))
        found = run_checks(pristine, rs, openapi)
        if any("server.max_body_bytes is no setting" in x for x in found):
            print("self-test ok: settings are read from config.rs (a removed field is reported)")
        else:
            failures += 1
            print(f"self-test FAILED: a setting removed from config.rs was not reported; findings: {found}")
        # A probe path that the OpenAPI document lacks.
        doc = json.loads(openapi.read_text())
        doc["paths"].pop("/readyz", None)
        alt = Path(tmp) / "openapi.json"
        alt.write_text(json.dumps(doc))
        found = run_checks(pristine, config_rs, alt)
        if any("readinessProbe path /readyz is no operation" in x for x in found):
            print("self-test ok: probe paths are checked against openapi.json")
        else:
            failures += 1
            print(f"self-test FAILED: a probe path missing from openapi.json was not reported; findings: {found}")
        # Metric names are read from metrics.rs: a family dropped there makes
        # the dashboard's use of it an unknown name.
        mrs = Path(tmp) / "metrics.rs"
        default_metrics = ROOT / "crates/api/src/metrics.rs"
        mrs.write_text(default_metrics.read_text().replace('("crosslink_jobs", "gauge"),', ""))
        found = run_checks(pristine, config_rs, openapi, mrs)
        if any("uses crosslink_jobs, which is no metric" in x for x in found):
            print("self-test ok: metric names are read from metrics.rs (a removed family is reported)")
        else:
            failures += 1
            print(f"self-test FAILED: a metric removed from metrics.rs was not reported; findings: {found}")
        # A family the service exports that no panel shows.
        mrs.write_text(default_metrics.read_text().replace('("crosslink_jobs", "gauge"),', '("crosslink_jobs", "gauge"),\n    ("crosslink_unshown_total", "counter"),'))
        found = run_checks(pristine, config_rs, openapi, mrs)
        if any("no panel shows crosslink_unshown_total" in x for x in found):
            print("self-test ok: every crosslink_* family must be on the dashboard")
        else:
            failures += 1
            print(f"self-test FAILED: an exported family no panel shows was not reported; findings: {found}")
    total = len(BREAKS) + 4
    print(f"check-deploy self-test: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploy", type=Path, default=ROOT / "deploy")
    ap.add_argument("--config-rs", type=Path, default=ROOT / "crates/api/src/config.rs")
    ap.add_argument("--openapi", type=Path, default=ROOT / "openapi/openapi.json")
    ap.add_argument("--metrics-rs", type=Path, default=ROOT / "crates/api/src/metrics.rs")
    ap.add_argument("--self-test", action="store_true", help="break copies of deploy/ and expect each break to be found")
    a = ap.parse_args()
    if a.self_test:
        return self_test(a.deploy, a.config_rs, a.openapi)
    findings = run_checks(a.deploy, a.config_rs, a.openapi, a.metrics_rs)
    for item in findings:
        print(f"deploy: {item}")
    if findings:
        print(f"check-deploy: {len(findings)} finding(s) in {a.deploy}")
        return 1
    print(f"check-deploy: {a.deploy} is consistent (YAML parses; probes, ports, settings and commands match; dashboards use exported metrics)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
