"""Checks what schema validation cannot: that the rendered objects point at each other.

Every Service, PodDisruptionBudget and NetworkPolicy selects the workload's pods, the
HorizontalPodAutoscaler targets the workload, probes and Service target ports name container
ports, every mounted ConfigMap and Secret exists, and terminationGracePeriodSeconds is longer
than the drain, grace and shutdown timeout in the configuration it mounts.

Usage: python check_wiring.py RENDERED.yaml
"""

import sys
import tomllib

import yaml


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
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("httpGet", {})
        if pre_stop.get("path") != "/drain" or pre_stop.get("port") not in ports:
            problems.append("preStop does not call /drain on a container port")
        for mount in container.get("volumeMounts", []):
            if mount.get("subPath"):
                problems.append(f"{mount['name']} is mounted with subPath: updates would not reach the pod")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    config = None
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            ref = ("ConfigMap", volume["configMap"]["name"])
        elif "secret" in volume:
            ref = ("Secret", volume["secret"]["secretName"])
        else:
            continue
        if ref not in names:
            problems.append(f"volume {volume['name']} refers to a missing {ref[0]} {ref[1]}")
        if ref[0] == "ConfigMap":
            data = next(o for o in objects if (o["kind"], o["metadata"]["name"]) == ref).get("data", {})
            if "edgewarden.toml" in data:
                config = tomllib.loads(data["edgewarden.toml"])["server"]
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
