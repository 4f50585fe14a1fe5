"""Checks what schema validation cannot: that the rendered objects point at each other.

Every Service, PodDisruptionBudget and NetworkPolicy selects the workload's pods, the
HorizontalPodAutoscaler targets the workload, probes and Service target ports name container
ports, every mounted ConfigMap and Secret exists, terminationGracePeriodSeconds is longer
than the drain, grace and shutdown timeout in the configuration it mounts, the preStop hook runs
`edgewarden drain -c` on that configuration, whose admin_token_file is in a mounted Secret, and no
Secret holds the repository's public demo key (config/demo/jwks.json).

Usage: python check_wiring.py RENDERED.yaml
"""

import base64
import json
import os
import sys
import tomllib

import yaml

DEMO_JWKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config", "demo", "jwks.json")


def demo_moduli():
    with open(DEMO_JWKS) as f:
        return {k["n"] for k in json.load(f)["keys"] if "n" in k}


def secret_texts(secret):
    texts = [base64.b64decode(v).decode(errors="replace") for v in secret.get("data", {}).values()]
    return texts + list(secret.get("stringData", {}).values())


def main(path):
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    workloads = by_kind.get("Deployment", []) + by_kind.get("DaemonSet", [])
    problems = []
    if len(workloads) != 1:
        return [f"expected one workload, found {len(workloads)}"]
    workload = workloads[0]
    template = workload["spec"]["template"]
    pod_labels = template["metadata"]["labels"]
    pod = template["spec"]
    ports = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}

    def selects(selector, what):
        if not selector or not all(pod_labels.get(k) == v for k, v in selector.items()):
            problems.append(f"{what} selector {selector} does not select the pods {pod_labels}")

    selects(workload["spec"]["selector"]["matchLabels"], workload["kind"])
    for service in by_kind.get("Service", []):
        name = service["metadata"]["name"]
        selects(service["spec"].get("selector"), f"Service {name}")
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in ports:
                problems.append(f"Service {name} targets port {port['targetPort']!r}, not a container port")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selects(pdb["spec"]["selector"]["matchLabels"], "PodDisruptionBudget")
    for policy in by_kind.get("NetworkPolicy", []):
        selects(policy["spec"]["podSelector"].get("matchLabels"), "NetworkPolicy")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) != (workload["kind"], workload["metadata"]["name"]):
            problems.append(f"HorizontalPodAutoscaler targets {target}, not the workload")
    for container in pod["containers"]:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            if port not in ports:
                problems.append(f"{probe} uses port {port!r}, not a container port")
        for mount in container.get("volumeMounts", []):
            if mount.get("subPath"):
                problems.append(f"{mount['name']} is mounted with subPath: updates would not reach the pod")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    config = None
    config_path = None
    secret_dirs = []
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            ref = ("ConfigMap", volume["configMap"]["name"])
        elif "secret" in volume:
            ref = ("Secret", volume["secret"]["secretName"])
            if volume["secret"].get("optional") and ref not in names:
                continue  # an optional Secret (keys from jwks_url) may be absent
        else:
            continue
        if ref not in names:
            problems.append(f"volume {volume['name']} refers to a missing {ref[0]} {ref[1]}")
            continue
        if ref[0] == "Secret" and volume["name"] in mounts:
            secret_dirs.append(mounts[volume["name"]])
        if ref[0] == "ConfigMap":
            data = next(o for o in objects if (o["kind"], o["metadata"]["name"]) == ref).get("data", {})
            if "edgewarden.toml" in data:
                config = tomllib.loads(data["edgewarden.toml"])["server"]
                if volume["name"] in mounts:
                    config_path = os.path.join(mounts[volume["name"]], "edgewarden.toml")
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    wanted = ["/usr/bin/edgewarden", "drain", "-c", config_path]
    if command != wanted:
        problems.append(f"preStop runs {command}, not {wanted} (edgewarden drain on the mounted configuration)")
    if config is not None:
        token = config.get("admin_token_file")
        if not token:
            problems.append("the configuration has no admin_token_file: the preStop drain would be refused")
        elif not any(token.startswith(d.rstrip("/") + "/") for d in secret_dirs):
            problems.append(f"admin_token_file {token} is not in a mounted Secret ({secret_dirs})")
    demo = demo_moduli()
    for secret in by_kind.get("Secret", []):
        if any(n in text for text in secret_texts(secret) for n in demo):
            problems.append(f"Secret {secret['metadata']['name']} holds the repository's public demo key")
    if config is None:
        problems.append("no mounted ConfigMap holds edgewarden.toml")
    else:
        needed = config.get("drain_s", 5) + config.get("shutdown_grace_s", 10) + config.get("shutdown_timeout_s", 1)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= needed:
            problems.append(
                f"terminationGracePeriodSeconds {grace} is not longer than drain_s + shutdown_grace_s"
                f" + shutdown_timeout_s = {needed}: pods would be killed mid-drain"
            )
    return problems


if __name__ == "__main__":
    found = main(sys.argv[1])
    for problem in found:
        print(f"{sys.argv[1]}: {problem}", file=sys.stderr)
    print(f"{sys.argv[1]}: wiring {'OK' if not found else 'BROKEN'}")
    sys.exit(1 if found else 0)
