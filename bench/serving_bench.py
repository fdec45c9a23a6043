"""Serving benchmarks: sync handler overhead, stream consumer throughput, cold start of each function.

    .venv/bin/python bench/serving_bench.py [--requests 3000] [--batches 20] [--rounds 3] [--consumer-before REV]

The endpoint (and DynamoDB) are replaced by a stub HTTP server on loopback in a separate process, so the
figures are the functions' own work plus one loopback round trip per AWS call, measured in this process.
Each figure is printed beside a straightforward baseline run in the same process:
- sync: a handler that creates its clients per call and reads the A/B table per request;
- consumer: one endpoint call and one PutItem per record; with ``--consumer-before REV`` also the consumer
  as it was at git revision REV (before/after of a change, same stub, same records);
- cold start: importing the handler module and creating its clients in a fresh interpreter.
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = base64.b64encode(os.urandom(3000)).decode()
ENV = {"LOG_LEVEL": "WARN", "ENDPOINT_NAME": "bench", "AB_TABLE": "ab", "RESULTS_TABLE": "results",
       "STREAM_NAME": "stream", "MAX_REQUEST_BYTES": "5242880", "CACHE_SECONDS": "10", "RESULT_TTL_SECONDS": "3600",
       "MAX_INSTANCES_PER_CALL": "64", "VERSIONS_TABLE": "versions", "MODEL_NAME": "image-classifier",
       "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:deploy", "VARIANTS": "champion,challenger",
       "MIN_CAPACITY": "1", "MAX_CAPACITY": "4", "TARGET_INVOCATIONS_PER_INSTANCE": "100",
       "SCALE_IN_COOLDOWN_SECONDS": "300", "SCALE_OUT_COOLDOWN_SECONDS": "60",
       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
CURRENT = {"Item": {"champion_version": {"N": "3"}, "challenger_version": {"N": "4"}}}


class Stub(BaseHTTPRequestHandler):
    """SageMaker runtime and DynamoDB, answering at once (HTTP/1.1 keep-alive, like the real services)."""

    protocol_version = "HTTP/1.1"
    # One segment per response, no Nagle delay (the real services do not add 40 ms per call either).
    disable_nagle_algorithm = True
    wbufsize = -1

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {"Content-Type": "application/json"}
        if self.path.endswith("/invocations"):
            count = len(json.loads(body)["instances"])
            answer = json.dumps({"predictions": [{"label": "cat", "probability": 0.93,
                                                  "top": [["cat", 0.93], ["dog", 0.05]]}] * count}).encode()
            headers["x-Amzn-Invoked-Production-Variant"] = "champion"
        else:
            target = self.headers.get("X-Amz-Target", "")
            answer = json.dumps(CURRENT if target.endswith("GetItem") else {"UnprocessedItems": {}}
                                if target.endswith("BatchWriteItem") else {}).encode()
            headers["Content-Type"] = "application/x-amz-json-1.0"
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.wfile.flush()

    def log_message(self, *args):
        pass


def _serve(port_queue):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _load(folder: str, path: Path | None = None):
    spec = importlib.util.spec_from_file_location(f"bench_{folder}_{id(path)}",
                                                  path or REPO / "functions" / folder / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Context:
    @staticmethod
    def get_remaining_time_in_millis():
        return 25_000


def _percentiles(samples):
    ordered = sorted(samples)
    return (ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000)


def bench_sync(requests: int) -> None:
    import boto3

    predict = _load("serving_predict")
    event = {"httpMethod": "POST", "resource": "/predict", "body": json.dumps({"instances": [IMAGE]})}

    def baseline(evt, ctx):
        body = json.loads(evt["body"])
        for item in body["instances"]:
            base64.b64decode(item, validate=True)
        runtime = boto3.client("sagemaker-runtime")
        answer = runtime.invoke_endpoint(EndpointName="bench", ContentType="application/json",
                                         Body=json.dumps({"instances": body["instances"]}))
        result = json.loads(answer["Body"].read())
        item = boto3.client("dynamodb").get_item(TableName="ab", Key={"endpoint_name": {"S": "bench"},
                                                                       "record": {"S": "current"}})["Item"]
        version = int(item[f"{answer['InvokedProductionVariant']}_version"]["N"])
        return {"statusCode": 200, "body": json.dumps({"predictions": result["predictions"], "model_version": version})}

    rows = []
    for label, fn, count in (("handler", predict.handler, requests), ("baseline", baseline, max(200, requests // 10))):
        for _ in range(50):
            fn(event, Context())
        samples, cpu = [], []
        for _ in range(count):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = fn(event, Context())
            samples.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        assert result["statusCode"] == 200, result
        rows.append((label, count, *_percentiles(samples), *_percentiles(cpu)))
    print("\nSync POST /predict per request (endpoint stub on loopback; target p50 < 1 ms, p99 < 2 ms)")
    print("wall = the whole call including the loopback round trip to the stub; cpu = the handler's own work")
    print(f"{'':10} {'requests':>9} {'wall p50':>9} {'wall p99':>9} {'cpu p50':>8} {'cpu p99':>8}  (ms)")
    for label, count, p50, p99, c50, c99 in rows:
        print(f"{label:10} {count:>9} {p50:>9.3f} {p99:>9.3f} {c50:>8.3f} {c99:>8.3f}")


def _records(n: int, predict=None) -> dict:
    """n records of one image each, as the prediction function (``predict``, default the current one) writes."""
    predict = predict or _load("serving_predict")
    return {"Records": [{"kinesis": {"sequenceNumber": str(i), "data": base64.b64encode(predict.stream_record(
        {"request_id": f"{i:032x}", "received_at": 0, "count": 1}, [IMAGE])).decode()}} for i in range(n)]}


def _function_at(rev: str, folder: str) -> object:
    """A function's handler module as it was at git revision ``rev``."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:functions/{folder}/handler.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "handler.py"
    path.write_text(source)
    return _load(folder, path)


def bench_consumer(batches: int, rounds: int, before: str | None) -> None:
    import boto3

    consumer = _load("serving_consumer")

    def baseline(event, ctx):
        runtime, ddb = boto3.client("sagemaker-runtime"), boto3.client("dynamodb")
        for record in event["Records"]:
            head, _, rest = base64.b64decode(record["kinesis"]["data"]).partition(b"\n")
            body = json.loads(head)
            if "sizes" in body:  # each image's bytes, zero-filled to a multiple of 3
                instances, pos = [], 0
                for size in body["sizes"]:
                    instances.append(base64.b64encode(rest[pos:pos + size]).decode())
                    pos += size + -size % 3
            else:
                instances = json.loads(rest)
            answer = runtime.invoke_endpoint(EndpointName="bench", ContentType="application/json",
                                             Body=json.dumps({"instances": instances}))
            ddb.put_item(TableName="results", Item={"request_id": {"S": body["request_id"]}, "status": {"S": "done"},
                                                    "result": {"S": answer["Body"].read().decode()}})
        return {"batchItemFailures": []}

    # Each consumer reads the records the prediction function of its own revision writes.
    runs = [("consumer", consumer.handler, batches, None)]
    if before:
        runs.append((f"@{before[:8]}", _function_at(before, "serving_consumer").handler, batches,
                     _function_at(before, "serving_predict")))
    runs.append(("baseline", baseline, max(1, batches // 10), None))
    print("\nStream consumer, records per second of CPU (one core), result writes included (target >= 15,000/s)")
    print(f"best of {rounds} rounds (the rounds alternate between the handlers, so a busy machine slows all alike)")
    print(f"{'':10} {'batch':>6} {'records':>8} {'rec/s cpu':>10} {'rec/s wall':>11}")
    for size in (100, 500):
        events = {label: _records(size, predict) for label, _, _, predict in runs}
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for label, fn, n, _ in runs:
                event = events[label]
                assert fn(event, None) == {"batchItemFailures": []}
                if "parse" in fn.__globals__:  # a consumer: every record readable, not written as failed
                    assert all(fn.__globals__["parse"](r).status == "done" for r in event["Records"]), label
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(n):
                    fn(event, None)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                rates = (size * n / cpu, size * n / wall)
                best[label] = max(best.get(label, rates), rates)
        for label, _, n, _ in runs:
            print(f"{label:10} {size:>6} {size * n:>8} {best[label][0]:>10.0f} {best[label][1]:>11.0f}")


COLD = """
import os, sys, time, importlib.util
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
t1 = time.perf_counter()
for name in sys.argv[2].split(","):
    module._client(name) if hasattr(module, "_client") else None
if hasattr(module, "_resource"):
    module._resource(os.environ["AB_TABLE"])
t2 = time.perf_counter()
print(f"{(t1 - t0) * 1000:.1f} {(t2 - t1) * 1000:.1f}")
"""
CLIENTS = {"serving_predict": "sagemaker-runtime,dynamodb,kinesis", "serving_consumer": "sagemaker-runtime,dynamodb",
           "serving_manage": "sagemaker,stepfunctions", "serving_autoscaling": "application-autoscaling,sagemaker"}


def bench_cold_start(runs: int = 3) -> None:
    print("\nCold start: import + every client the function may create, in a fresh interpreter (best of 3;")
    print("target < 250 ms for the inference functions, predict and consumer; the others for reference)")
    print(f"{'function':22} {'import ms':>10} {'clients ms':>11} {'total ms':>9}")
    env = {**os.environ, **ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    for folder, clients in CLIENTS.items():
        best = None
        for _ in range(runs):
            out = subprocess.run([sys.executable, "-c", COLD, str(REPO / "functions" / folder / "handler.py"), clients],
                                 capture_output=True, text=True, env=env, check=True).stdout.split()
            imp, cli = float(out[0]), float(out[1])
            best = min(best or (imp, cli), (imp, cli), key=sum)
        print(f"{folder:22} {best[0]:>10.1f} {best[1]:>11.1f} {sum(best):>9.1f}")
    base = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import boto3; "
                           "boto3.client('sagemaker-runtime'); print(f'{(time.perf_counter()-t)*1000:.1f}')"],
                          capture_output=True, text=True, env=env, check=True).stdout.strip()
    print(f"{'baseline: boto3 + 1 client':22} {'':>10} {'':>11} {float(base):>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("sync", "consumer", "cold"), help="run one of the three benchmarks")
    parser.add_argument("--consumer-before", metavar="REV", help="also run the consumer as of this git revision")
    args = parser.parse_args()
    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    port = ports.get(timeout=10)
    os.environ.update(ENV)
    os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{port}"
    try:
        if args.only in (None, "sync"):
            bench_sync(args.requests)
        if args.only in (None, "consumer"):
            bench_consumer(args.batches, args.rounds, args.consumer_before)
    finally:
        server.terminate()
    if args.only in (None, "cold"):
        bench_cold_start()


if __name__ == "__main__":
    main()
