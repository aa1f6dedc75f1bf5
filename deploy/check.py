#!/usr/bin/env python3
"""Checks the Kubernetes manifests as far as a machine without a cluster can.

For each kustomization given (deploy/kubernetes and the examples), it
  1. renders it (`kubectl kustomize` or `kustomize build`),
  2. validates every object against the Kubernetes schemas, strictly (unknown fields are errors),
  3. runs `ws-daemon --print-config` on the config file the DaemonSet mounts, with the
     container's arguments and the plain environment variables of the image (deploy/Dockerfile)
     and the container, so the effective configuration is the one the pod would have (and a
     refused one fails here),
  4. checks that the objects agree with each other and with that configuration: ConfigMap and
     Secret keys, named ports, probe ports and paths, host paths, the update strategy.
Then it breaks the first kustomization's objects or effective configuration on purpose, one way
at a time, and expects each break to be reported (so a check that cannot fail does not pass).

Prints one `ok` / `not ok` line per check and closing `# pass N` / `# fail N` lines (as node
--test does); exits 1 if any check failed.
"""

import argparse
import copy
import ipaddress
import os
import posixpath
import shlex
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

# Kubernetes versions whose schemas the objects must satisfy: the oldest this deployment is meant
# for and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CONTAINER = "ws-daemon"


class Problems(list):
    """What one check found wrong, as messages."""

    def need(self, condition, message):
        if not condition:
            self.append(message)
        return condition


def render(kustomize, directory):
    out = subprocess.run(
        shlex.split(kustomize) + [directory], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kustomize} {directory} failed:\n{out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def example_secrets(directory):
    """Secrets in `*.example.yaml` next to the kustomization: documented, not applied."""
    found = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".example.yaml"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                found += [d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Secret"]
    return found


def objects(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def the_daemonset(docs):
    sets = objects(docs, "DaemonSet")
    if len(sets) != 1:
        raise RuntimeError(f"expected one DaemonSet, found {len(sets)}")
    return sets[0]


def the_container(ds):
    containers = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == CONTAINER]
    if len(containers) != 1:
        raise RuntimeError(f"the DaemonSet has no container named {CONTAINER}")
    return containers[0]


def secret_keys(name, namespace, secrets):
    for s in secrets:
        meta = s.get("metadata", {})
        if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
            return set(s.get("data") or {}) | set(s.get("stringData") or {})
    return None


def configmap_data(name, namespace, docs):
    for c in objects(docs, "ConfigMap"):
        meta = c.get("metadata", {})
        if meta.get("name") == name and meta.get("namespace") == namespace:
            return dict(c.get("data") or {})
    return None


def config_file_path(container):
    """The --config argument (or WSD_CONFIG) the daemon is started with."""
    words = list(container.get("command") or []) + list(container.get("args") or [])
    for i, word in enumerate(words):
        if word in ("--config", "-c") and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    for env in container.get("env") or []:
        if env["name"] == "WSD_CONFIG" and "value" in env:
            return env["value"]
    return None


def mount_of(path, container, volumes):
    """The volume mount that holds `path` (the deepest one), with its volume."""
    best = None
    for m in container.get("volumeMounts") or []:
        root = m["mountPath"].rstrip("/") or "/"
        if path == root or path.startswith(root.rstrip("/") + "/"):
            if best is None or len(root) > len(best[0]["mountPath"].rstrip("/")):
                best = (m, volumes.get(m["name"]))
    return best


def config_toml(docs):
    """The text of the config file the DaemonSet's container reads, or an explanation."""
    ds = the_daemonset(docs)
    ns = ds["metadata"].get("namespace")
    container = the_container(ds)
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"].get("volumes") or []}
    path = config_file_path(container)
    if path is None:
        return None, "the container is not started with --config (or WSD_CONFIG)"
    found = mount_of(path, container, volumes)
    if found is None or found[1] is None or "configMap" not in found[1]:
        return None, f"the config file {path} is not on a ConfigMap volume"
    mount, volume = found
    inside = posixpath.relpath(path, mount["mountPath"])
    key = inside
    for item in volume["configMap"].get("items") or []:
        if item["path"] == inside:
            key = item["key"]
    data = configmap_data(volume["configMap"]["name"], ns, docs)
    if data is None:
        return None, f"the ConfigMap {volume['configMap']['name']} is not in the manifests"
    if key not in data:
        return None, f"the ConfigMap {volume['configMap']['name']} has no key {key}"
    return data[key], None


def image_env(dockerfile):
    """The variables the image's last stage sets (`ENV K=V ...`, lines joined at a backslash)."""
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if words and words[0].upper() == "FROM":
            env = {}
        elif words and words[0].upper() == "ENV":
            for word in words[1:]:
                key, _, value = word.partition("=")
                env[key] = value
    return env


def effective_config(ws_daemon, docs, image):
    """`ws-daemon --print-config` with the pod's config file, arguments and variables (the
    image's and the container's plain ones), as root (HOME=/root), as the DaemonSet runs it."""
    text, why = config_toml(docs)
    if text is None:
        raise RuntimeError(why)
    container = the_container(the_daemonset(docs))
    words = list(container.get("command") or []) + list(container.get("args") or [])
    # The daemon's own arguments: what follows the program named ws-daemon (after nsenter's).
    rest = words[words.index("ws-daemon") + 1 :] if "ws-daemon" in words else words
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", **image}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
    with tempfile.TemporaryDirectory() as tmp:
        file = os.path.join(tmp, "config.toml")
        with open(file, "w", encoding="utf-8") as f:
            f.write(text)
        args, skip = [], False
        for word in rest:
            if skip:
                skip = False
            elif word in ("--config", "-c"):
                args += [word, file]
                skip = True
            elif word.startswith("--config="):
                args.append(f"--config={file}")
            else:
                args.append(word)
        if config_file_path(container) and not any(a.startswith(("--config", "-c")) for a in args):
            env["WSD_CONFIG"] = file
        out = subprocess.run(
            [ws_daemon, *args, "--print-config"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(
            f"ws-daemon --print-config refused the ConfigMap's config: {out.stderr.strip()}"
        )
    return tomllib.loads(out.stdout)


def check_schemas(docs):
    p = Problems()
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = "/".join(str(x) for x in e.path)
                p.append(f"{name} (Kubernetes {version}): {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                p.append(f"{name}: no schema for this kind in Kubernetes {version}")
    return p


def check_references(docs, examples):
    """Every ConfigMap and Secret key the DaemonSet takes exists (or is an optional Secret)."""
    p = Problems()
    ds = the_daemonset(docs)
    ns = ds["metadata"].get("namespace")
    pod = ds["spec"]["template"]["spec"]
    secrets = objects(docs, "Secret") + examples

    def configmap(name, key, optional, what):
        data = configmap_data(name, ns, docs)
        if optional:
            return
        if p.need(data is not None, f"{what}: ConfigMap {name} is not in the manifests") and key:
            p.need(key in data, f"{what}: ConfigMap {name} has no key {key}")

    def secret(name, key, optional, what):
        keys = secret_keys(name, ns, secrets)
        if optional:
            return
        if (
            p.need(
                keys is not None,
                f"{what}: Secret {name} is neither in the manifests nor in a *.example.yaml",
            )
            and key
        ):
            p.need(key in keys, f"{what}: Secret {name} has no key {key}")

    for v in pod.get("volumes") or []:
        if "configMap" in v:
            cm = v["configMap"]
            for item in cm.get("items") or [None]:
                configmap(
                    cm["name"], item and item["key"], cm.get("optional"), f"volume {v['name']}"
                )
        if "secret" in v:
            s = v["secret"]
            for item in s.get("items") or [None]:
                secret(
                    s["secretName"], item and item["key"], s.get("optional"), f"volume {v['name']}"
                )
    for c in pod.get("initContainers", []) + pod["containers"]:
        for e in c.get("env") or []:
            ref = e.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                configmap(r["name"], r["key"], r.get("optional"), f"env {e['name']}")
            if "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                secret(r["name"], r["key"], r.get("optional"), f"env {e['name']}")
        for e in c.get("envFrom") or []:
            if "configMapRef" in e:
                configmap(
                    e["configMapRef"]["name"], None, e["configMapRef"].get("optional"), "envFrom"
                )
            if "secretRef" in e:
                secret(e["secretRef"]["name"], None, e["secretRef"].get("optional"), "envFrom")
    sa = pod.get("serviceAccountName")
    if sa:
        p.need(
            any(o["metadata"]["name"] == sa for o in objects(docs, "ServiceAccount")),
            f"ServiceAccount {sa} is not in the manifests",
        )
    return p


def needs_config(check):
    """A check of the manifests against the effective configuration, which it needs."""

    def checked(docs, config):
        if config is None:
            return Problems(["cannot check without the effective configuration (see above)"])
        return check(docs, config)

    checked.__doc__ = check.__doc__
    return checked


def port_of(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@needs_config
def check_ports(docs, config):
    """Named ports exist; probes and the Service point at the daemon's listeners."""
    p = Problems()
    ds = the_daemonset(docs)
    container = the_container(ds)
    ports = {
        port["name"]: port["containerPort"]
        for port in container.get("ports") or []
        if "name" in port
    }

    def resolve(port, what):
        if isinstance(port, int):
            return port
        p.need(port in ports, f"{what}: the container has no port named {port}")
        return ports.get(port)

    grpc_host, grpc_port = port_of(config["server"]["listen"])
    p.need(
        ports.get("grpc") == grpc_port,
        f"containerPort grpc is {ports.get('grpc')}, server.listen listens on {grpc_port}",
    )
    metrics = config["server"].get("metrics_listen") or ""
    if p.need(metrics, "server.metrics_listen is off, so /live and /ready are not served"):
        metrics_host, metrics_port = port_of(metrics)
        p.need(
            ports.get("metrics") == metrics_port,
            f"containerPort metrics is {ports.get('metrics')}, "
            f"server.metrics_listen is on {metrics_port}",
        )
        p.need(
            not ipaddress.ip_address(metrics_host).is_loopback,
            f"server.metrics_listen {metrics} is loopback: the kubelet's probes cannot reach it",
        )
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind)
            if probe and "httpGet" in probe:
                port = resolve(probe["httpGet"]["port"], kind)
                p.need(
                    port == metrics_port,
                    f"{kind} asks port {port}, /live and /ready are on {metrics_port}",
                )
    p.need(
        not ipaddress.ip_address(grpc_host).is_loopback,
        f"server.listen {config['server']['listen']} is loopback: the Service cannot reach it",
    )
    labels = ds["spec"]["template"]["metadata"].get("labels") or {}
    for svc in objects(docs, "Service"):
        name = svc["metadata"]["name"]
        selector = svc["spec"].get("selector") or {}
        p.need(
            selector and all(labels.get(k) == v for k, v in selector.items()),
            f"Service {name}: its selector {selector} does not select the DaemonSet's pods",
        )
        for sp in svc["spec"].get("ports") or []:
            target = sp.get("targetPort", sp["port"])
            resolve(target, f"Service {name} port {sp.get('name', sp['port'])}")
    return p


@needs_config
def check_probes(docs, config):
    p = Problems()
    container = the_container(the_daemonset(docs))
    for kind, path in (
        ("livenessProbe", "/live"),
        ("readinessProbe", "/ready"),
        ("startupProbe", "/live"),
    ):
        probe = container.get(kind)
        if kind == "startupProbe" and probe is None:
            continue
        got = ((probe or {}).get("httpGet") or {}).get("path")
        p.need(got == path, f"{kind} asks {got}, the daemon serves {path}")
    ready = container.get("readinessProbe") or {}
    timeout_ms = ready.get("timeoutSeconds", 1) * 1000
    check_ms = config["health"]["check_timeout_ms"]
    p.need(
        timeout_ms > check_ms,
        f"readinessProbe timeoutSeconds ({timeout_ms} ms) is not above "
        f"health.check_timeout_ms ({check_ms})",
    )
    return p


@needs_config
def check_node_access(docs, config):
    """Host paths, propagation, hostPID, privileges, graceful updates."""
    p = Problems()
    ds = the_daemonset(docs)
    pod = ds["spec"]["template"]["spec"]
    container = the_container(ds)
    volumes = {v["name"]: v for v in pod.get("volumes") or []}

    def on_host(path, what, bidirectional=False):
        found = mount_of(path, container, volumes)
        if not p.need(found is not None and found[1] is not None, f"{what} {path} is on no volume"):
            return
        mount, volume = found
        if p.need(
            "hostPath" in volume, f"{what} {path} is on volume {mount['name']}, not a hostPath"
        ):
            p.need(not mount.get("readOnly"), f"{what} {path} is on a read-only mount")
            if bidirectional:
                p.need(
                    mount.get("mountPropagation") == "Bidirectional",
                    f"{what} {path} is on volume {mount['name']} "
                    "without mountPropagation Bidirectional",
                )

    on_host(config["working_area"], "working_area", bidirectional=True)
    if config["storage"]["backend"] == "local":
        on_host(config["storage"]["local_path"], "storage.local_path (backups)")
    socket = config.get("runtime", {}).get("containerd", {}).get("socket")
    if p.need(socket, "runtime.containerd.socket is not set: no workspace container is found"):
        on_host(socket, "runtime.containerd.socket")
    v2 = config.get("iws", {}).get("cgroup", {}).get("v2_mount") or "/sys/fs/cgroup"
    on_host(v2, "the cgroup hierarchy")
    p.need(pod.get("hostPID") is True, "hostPID is not true: container PIDs are the node's")
    sc = container.get("securityContext") or {}
    p.need(sc.get("privileged") is True, "the container is not privileged (Bidirectional needs it)")
    p.need(sc.get("runAsUser") == 0, "the container does not run as root (runAsUser 0)")
    command = container.get("command") or []
    p.need(
        "--cgroup=/proc/1/ns/cgroup" in command,
        "the daemon is not started in the node's cgroup namespace "
        "(nsenter --cgroup=/proc/1/ns/cgroup)",
    )
    grace = pod.get("terminationGracePeriodSeconds", 30)
    shutdown = config["limits"]["shutdown_grace_secs"]
    p.need(
        grace > shutdown,
        f"terminationGracePeriodSeconds {grace} is not above limits.shutdown_grace_secs {shutdown}",
    )
    strategy = ds["spec"].get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    p.need(
        strategy.get("type", "RollingUpdate") == "RollingUpdate"
        and str(rolling.get("maxSurge", 0)) in ("0", "0%"),
        "the update may start a second daemon on a node (maxSurge must be 0)",
    )
    return p


CHECKS = [
    ("ConfigMap and Secret keys exist", lambda docs, ex, cfg: check_references(docs, ex)),
    (
        "ports agree with server.listen and server.metrics_listen",
        lambda docs, ex, cfg: check_ports(docs, cfg),
    ),
    ("probes ask /live and /ready", lambda docs, ex, cfg: check_probes(docs, cfg)),
    (
        "host paths, propagation, privileges, updates",
        lambda docs, ex, cfg: check_node_access(docs, cfg),
    ),
]


def all_problems(docs, examples, config):
    found = []
    for _, check in CHECKS:
        found += check(docs, examples, config)
    return found


def breaks():
    """Ways to break the first kustomization (its objects or its effective configuration) on
    purpose, each with what its report must mention."""

    def container(docs):
        return the_container(the_daemonset(docs))

    def pod(docs):
        return the_daemonset(docs)["spec"]["template"]["spec"]

    def config_volume(docs):
        return next(v for v in pod(docs)["volumes"] if "configMap" in v)

    def port(docs, name, number):
        next(x for x in container(docs)["ports"] if x["name"] == name)["containerPort"] = number

    def mount(docs, name):
        mount_path = mount_of(name, container(docs), {})
        if mount_path is None:
            raise RuntimeError(f"no volume mount holds {name}")
        return mount_path[0]

    def secret_key(docs, examples):
        container(docs).setdefault("env", []).append(
            {
                "name": "WSD_TEST_SECRET",
                "valueFrom": {
                    "secretKeyRef": {"name": "ws-daemon-storage", "key": "NOT_IN_THE_SECRET"}
                },
            }
        )
        examples[:] = [
            {
                "kind": "Secret",
                "metadata": {"name": "ws-daemon-storage"},
                "stringData": {"AWS_ACCESS_KEY_ID": "x"},
            }
        ]

    return [
        (
            "a ConfigMap item key that is not in the ConfigMap",
            lambda d, e, c: config_volume(d)["configMap"]["items"][0].update(key="config.yaml"),
            "config.yaml",
        ),
        (
            "a metrics containerPort other than server.metrics_listen's",
            lambda d, e, c: port(d, "metrics", 9501),
            "9501",
        ),
        (
            "a grpc containerPort other than server.listen's",
            lambda d, e, c: port(d, "grpc", 8081),
            "8081",
        ),
        (
            "a probe on a port name the container does not have",
            lambda d, e, c: container(d)["readinessProbe"]["httpGet"].update(port="health"),
            "health",
        ),
        (
            "a Service targetPort name the container does not have",
            lambda d, e, c: objects(d, "Service")[0]["spec"]["ports"][0].update(targetPort="gprc"),
            "gprc",
        ),
        (
            "a readiness probe on /live",
            lambda d, e, c: container(d)["readinessProbe"]["httpGet"].update(path="/live"),
            "/ready",
        ),
        (
            "metrics on loopback",
            lambda d, e, c: c["server"].update(
                metrics_listen="127.0.0.1:" + c["server"]["metrics_listen"].rpartition(":")[2]
            ),
            "loopback",
        ),
        (
            "the working area without Bidirectional propagation",
            lambda d, e, c: mount(d, c["working_area"]).pop("mountPropagation"),
            "Bidirectional",
        ),
        (
            "the working area outside the host mount",
            lambda d, e, c: c.update(working_area="/srv/workspaces"),
            "/srv/workspaces",
        ),
        (
            "the containerd socket outside the host mount",
            lambda d, e, c: c["runtime"]["containerd"].update(
                socket="/var/run/docker/containerd.sock"
            ),
            "/var/run/docker/containerd.sock",
        ),
        (
            "a secret key missing from the example Secret",
            lambda d, e, c: secret_key(d, e),
            "NOT_IN_THE_SECRET",
        ),
        ("no hostPID", lambda d, e, c: pod(d).pop("hostPID"), "hostPID"),
        (
            "a grace period below shutdown_grace_secs",
            lambda d, e, c: pod(d).update(
                terminationGracePeriodSeconds=c["limits"]["shutdown_grace_secs"]
            ),
            "terminationGracePeriodSeconds",
        ),
        (
            "a surge of a second daemon on a node",
            lambda d, e, c: the_daemonset(d)["spec"]["updateStrategy"]["rollingUpdate"].update(
                maxSurge=1
            ),
            "maxSurge",
        ),
        (
            "a readiness probe timeout below health.check_timeout_ms",
            lambda d, e, c: container(d)["readinessProbe"].update(timeoutSeconds=1),
            "check_timeout_ms",
        ),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kustomize", required=True, help='e.g. "kubectl kustomize" or "kustomize build"'
    )
    parser.add_argument("--ws-daemon", required=True, help="the ws-daemon binary")
    parser.add_argument(
        "--dockerfile",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "Dockerfile"),
        help="the image's Dockerfile (for the variables it sets)",
    )
    parser.add_argument(
        "directories", nargs="+", help="kustomizations; the first one is also broken on purpose"
    )
    args = parser.parse_args()

    results = []
    image = image_env(args.dockerfile)

    def report(name, problems):
        results.append(not problems)
        print(f"{'ok' if not problems else 'not ok'} {len(results)} - {name}")
        for problem in problems:
            print("  # " + str(problem).replace("\n", "\n  # "))
        sys.stdout.flush()

    rendered = {}
    report(
        "the image sets no WSD_* variable (it would override the ConfigMap's config)",
        [f"{args.dockerfile} sets {k}" for k in image if k.startswith("WSD_")],
    )
    for directory in args.directories:
        try:
            docs = render(args.kustomize, directory)
        except RuntimeError as e:
            report(f"{directory}: renders", [str(e)])
            continue
        report(f"{directory}: renders ({len(docs)} objects)", [])
        examples = example_secrets(directory)
        report(
            f"{directory}: every object valid for Kubernetes "
            f"{', '.join(KUBERNETES_VERSIONS)} (strict)",
            check_schemas(docs + examples),
        )
        try:
            config, refused = effective_config(args.ws_daemon, docs, image), []
        except (RuntimeError, OSError, ValueError) as e:
            config, refused = None, [str(e)]
        report(f"{directory}: ws-daemon --print-config accepts the ConfigMap's config", refused)
        for name, check in CHECKS:
            try:
                problems = check(docs, examples, config)
            except (RuntimeError, KeyError, StopIteration, ValueError, TypeError) as e:
                problems = [f"cannot check: {e!r}"]
            report(f"{directory}: {name}", problems)
        if config is not None:
            rendered[directory] = (docs, examples, config)

    first = args.directories[0]
    if first in rendered:
        for what, damage, mentioned in breaks():
            docs, examples, config = copy.deepcopy(rendered[first])
            try:
                damage(docs, examples, config)
                found = all_problems(docs, examples, config)
            except (RuntimeError, KeyError, StopIteration, ValueError, TypeError, IndexError) as e:
                found = [f"cannot break it this way: {e!r}"]
            hit = [f for f in found if mentioned in f]
            report(
                f"{first}: {what} is reported",
                [] if hit else [f"not reported (found: {found or 'nothing'})"],
            )

    passed = sum(results)
    print(f"# pass {passed}")
    print(f"# fail {len(results) - passed}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
