"""Turns a rendered variant into what `podman kube play` (podman 4.3, Debian 12) can run on one
machine for the smoke test, changing only what podman or the loopback-only test needs:

- one replica, on the host's network (the test stays on loopback), so the listeners and the
  origin are moved to free loopback ports and probes name their port by number (podman cannot
  map container ports on the host network);
- the Secrets are mounted from ConfigMaps with the same content (podman 4.3 mounts Secret
  volumes without decoding them);
- drain_s is 1 s, so the smoke test's drain (`edgewarden drain` in the container) is short;
  podman runs no preStop hook, so the test runs that command itself.
- the workload, its ConfigMaps and Secret only (podman ignores Services, policies, autoscalers).

Usage: python podman_play.py RENDERED.yaml OUT.yaml PROXY_PORT ADMIN_PORT ORIGIN_ADDRESS
"""

import base64
import sys

import yaml


def main(rendered, out, proxy, admin, origin):
    objects = [o for o in yaml.safe_load_all(open(rendered)) if o]
    kept = []
    for o in objects:
        if o["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in o.get("data", {}).items()}
            data.update(o.get("stringData", {}))
            o = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": o["metadata"], "data": data}
        if o["kind"] == "ConfigMap" and "edgewarden.toml" in o.get("data", {}):
            text = o["data"]["edgewarden.toml"]
            text = text.replace("0.0.0.0:8080", f"127.0.0.1:{proxy}")
            text = text.replace("0.0.0.0:9901", f"127.0.0.1:{admin}")
            text = text.replace("app.default.svc.cluster.local:80", origin)
            text = text.replace("drain_s = 10", "drain_s = 1")
            o["data"]["edgewarden.toml"] = text
        if o["kind"] in ("Deployment", "DaemonSet"):
            o = dict(o, kind="Deployment")
            o["spec"] = {k: v for k, v in o["spec"].items() if k in ("selector", "template")}
            o["spec"]["replicas"] = 1
            pod = o["spec"]["template"]["spec"]
            pod["hostNetwork"] = True
            for volume in pod.get("volumes", []):
                if "secret" in volume:
                    volume["configMap"] = {"name": volume.pop("secret")["secretName"]}
            for container in pod["containers"]:
                container.pop("ports", None)
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe in container:
                        container[probe]["httpGet"]["port"] = int(admin)
        if o["kind"] in ("ConfigMap", "Deployment"):
            kept.append(o)
    with open(out, "w") as f:
        yaml.safe_dump_all(kept, f)


if __name__ == "__main__":
    main(*sys.argv[1:6])
