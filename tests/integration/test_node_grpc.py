"""gRPC on the process node: grpc readiness probes and a long-lived stream through a ClusterIP."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from localcluster import node_testing as nt
from localcluster.cp_testing import Cluster

pytestmark = pytest.mark.integration
Obj = dict[str, Any]

# SERVING for 8 s, then NOT_SERVING: the stream must carry both, the probe must notice the second.
HEALTH_SERVER = """
import time
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(4))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port("0.0.0.0:50051")
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
time.sleep(8)
servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
server.wait_for_termination()
"""


def test_grpc_probe_and_a_long_lived_stream_through_the_cluster_ip(
    cluster: Cluster, namespace: str
) -> None:
    probe = {"grpc": {"port": 50051}, "periodSeconds": 1, "failureThreshold": 1}
    ctr = nt.container("grpc", ["python", "-c", HEALTH_SERVER], readinessProbe=probe,
                       ports=[{"containerPort": 50051, "name": "grpc"}])  # fmt: skip
    cluster.apply(
        nt.pod("health", {"containers": [ctr]}, labels={"app": "health"}), namespace=namespace
    )
    svc = nt.service("health", port=50051, target="grpc")
    cluster.apply(svc, namespace=namespace)
    nt.wait_until(lambda: nt.is_ready(cluster.kubectl_json("get", "pod", "health", "-n", namespace)),
                  timeout=30, what="health Ready by its grpc probe")  # fmt: skip
    cluster_ip = cluster.kubectl_json("get", "service", "health", "-n", namespace)["spec"][
        "clusterIP"
    ]

    seen = []
    with grpc.insecure_channel(f"{cluster_ip}:50051") as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=30
        )
        for reply in stream:  # one HTTP/2 stream, open across the status change
            seen.append(reply.status)
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
    assert seen[0] == health_pb2.HealthCheckResponse.SERVING
    assert seen[-1] == health_pb2.HealthCheckResponse.NOT_SERVING
    nt.wait_until(lambda: not nt.is_ready(cluster.kubectl_json("get", "pod", "health", "-n", namespace)),
                  timeout=15, what="health unready after NOT_SERVING")  # fmt: skip
