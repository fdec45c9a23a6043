#!/bin/bash
# gpu-training bootstrap, rendered by gpu_training/user_data.py. cloud-init runs it on first boot
# only; what it sets up are systemd units that survive reboots, and every step is safe to re-run.
set -Eeuo pipefail
exec > >(tee -a /var/log/mlplatform-bootstrap.log) 2>&1  # cloud-init copies stdout to the console
log() { printf '%s mlplatform-bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
trap 'log "FAILED (exit $?) at line ${LINENO}: ${BASH_COMMAND}"' ERR
export DEBIAN_FRONTEND=noninteractive

#@@PARAMS@@

retry() {  # retry CMD...: five tries, growing pauses, for network and apt lock hiccups
  local n=1
  until "$@"; do
    if ((n >= 5)); then log "giving up after ${n} tries: $*"; return 1; fi
    log "try ${n} failed, retrying: $*"
    sleep $((n * 10))
    n=$((n + 1))
  done
}
APT_UPDATED=0
apt_install() {
  if ((APT_UPDATED == 0)); then retry apt-get -o DPkg::Lock::Timeout=300 update -q && APT_UPDATED=1; fi
  retry apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@"
}
imds() {  # imds PATH: IMDSv2 (tokens are required on this fleet)
  local token
  token=$(curl -sSf -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
  curl -sSf -m 5 -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/$1"
}

log "starting: stack ${STACK}, fleet ${FLEET_NAME}, region ${REGION}"
INSTANCE_ID=$(retry imds meta-data/instance-id)
log "instance ${INSTANCE_ID} ($(imds meta-data/instance-type))"

# 1. NVIDIA driver, only where the AMI lacks one that drives this GPU (current DLAMIs ship open kernel
# modules, which do not drive Volta/p3). A failed install does not stop the bootstrap: the services
# below still start and gpu-metrics reports the errors, which alarm.
NEEDS_REBOOT=0
if nvidia-smi -L >/dev/null 2>&1; then
  log "NVIDIA driver present: $(nvidia-smi -L | wc -l) GPU(s)"
elif ((INSTALL_DRIVER_IF_MISSING == 1)); then
  log "nvidia-smi fails: installing the driver ubuntu-drivers recommends for this GPU"
  if apt_install ubuntu-drivers-common && retry ubuntu-drivers install --gpgpu; then
    if modprobe nvidia && nvidia-smi -L; then
      log "NVIDIA driver installed"
    else
      NEEDS_REBOOT=1  # another driver's module is still loaded: the new one loads on the next boot
    fi
  else
    log "ERROR: NVIDIA driver install failed; GPU metrics will report errors"
  fi
else
  log "ERROR: nvidia-smi fails and install_driver_if_missing is off; GPU metrics will report errors"
fi

# 2. Python with boto3 for the collector and the watcher: the system one, else a venv.
PYTHON=/usr/bin/python3
if ! "$PYTHON" -c 'import boto3' 2>/dev/null; then
  PYTHON=/opt/mlplatform/venv/bin/python
  if ! "$PYTHON" -c 'import boto3' 2>/dev/null; then
    log "creating /opt/mlplatform/venv with ${BOTO3_REQUIREMENT}"
    rm -rf /opt/mlplatform/venv
    if ! /usr/bin/python3 -m venv /opt/mlplatform/venv; then
      apt_install python3-venv
      rm -rf /opt/mlplatform/venv
      /usr/bin/python3 -m venv /opt/mlplatform/venv
    fi
    retry /opt/mlplatform/venv/bin/pip install -q "${BOTO3_REQUIREMENT}"
    "$PYTHON" -c 'import boto3'
  fi
fi

# 3. Settings, checkpoint hook and the instance scripts.
install -d -m 0755 /opt/mlplatform /etc/mlplatform /var/log/mlplatform /var/lib/mlplatform "$CHECKPOINT_DIR" "$TRAINING_LOG_DIR"
cat >/etc/mlplatform/env.tmp <<ENV
AWS_REGION=${REGION}
AWS_DEFAULT_REGION=${REGION}
STACK=${STACK}
FLEET_NAME=${FLEET_NAME}
INSTANCE_ID=${INSTANCE_ID}
METRIC_NAMESPACE=${METRIC_NAMESPACE}
METRICS_INTERVAL_S=${METRICS_INTERVAL_S}
ARTIFACTS_BUCKET=${ARTIFACTS_BUCKET}
EXPERIMENTS_TABLE=${EXPERIMENTS_TABLE}
CHECKPOINT_DIR=${CHECKPOINT_DIR}
CHECKPOINT_S3_URI=s3://${ARTIFACTS_BUCKET}/checkpoints/${FLEET_NAME}/${INSTANCE_ID}/
CHECKPOINT_HOOK=/etc/mlplatform/checkpoint-hook.sh
CHECKPOINT_HOOK_TIMEOUT_S=${HOOK_TIMEOUT_S}
HPARAMS_PREFIX=${HPARAMS_PREFIX}
TRAINING_LOG_GROUP=${TRAINING_LOG_GROUP}
ENV
mv -f /etc/mlplatform/env.tmp /etc/mlplatform/env
if ((HAS_CHECKPOINT_HOOK == 1)); then
  cat >/etc/mlplatform/checkpoint-hook.sh <<'MLP_HOOK'
#!/bin/bash
#@@HOOK@@
MLP_HOOK
  chmod 0755 /etc/mlplatform/checkpoint-hook.sh
else
  rm -f /etc/mlplatform/checkpoint-hook.sh
fi
base64 -d <<'MLP_FILES_B64' | tar -xz --no-same-owner -C /opt/mlplatform
#@@FILES@@
MLP_FILES_B64
log "installed $(cd /opt/mlplatform && echo ./*.py)"
# The SSM run documents call this: the Python found above, the run script beside the others.
printf '#!/bin/sh\nexec %s /opt/mlplatform/training_run.py "$@"\n' "$PYTHON" >/usr/local/bin/mlplatform-training-run
chmod 0755 /usr/local/bin/mlplatform-training-run

# 4. CloudWatch agent: GPU metrics, fleet roll-up and log shipping.
CWA_CTL=/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl
if [[ ! -x "$CWA_CTL" ]]; then
  arch=$(dpkg --print-architecture)
  log "installing the CloudWatch agent (${arch})"
  retry curl -sSfL -m 300 -o /tmp/amazon-cloudwatch-agent.deb \
    "https://amazoncloudwatch-agent-${REGION}.s3.${REGION}.amazonaws.com/ubuntu/${arch}/latest/amazon-cloudwatch-agent.deb"
  retry dpkg -i -E /tmp/amazon-cloudwatch-agent.deb
  rm -f /tmp/amazon-cloudwatch-agent.deb
fi
printf '%s\n' "$CWAGENT_CONFIG" >/opt/mlplatform/cloudwatch-agent.json
"$CWA_CTL" -a fetch-config -m ec2 -s -c file:/opt/mlplatform/cloudwatch-agent.json

# 5. The collector and the watcher as systemd services (back after a reboot, restarted on crash).
unit() {  # unit NAME DESCRIPTION SCRIPT RESTART STOP_TIMEOUT_S
  cat >"/etc/systemd/system/$1.service" <<UNIT
[Unit]
Description=$2
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile=/etc/mlplatform/env
Environment=PYTHONUNBUFFERED=1
ExecStart=${PYTHON} /opt/mlplatform/$3
Restart=$4
RestartSec=5
TimeoutStopSec=$5
StandardOutput=append:/var/log/mlplatform/$1.log
StandardError=inherit

[Install]
WantedBy=multi-user.target
UNIT
}
unit mlplatform-gpu-metrics "mlplatform GPU health metrics" gpu_metrics.py always 30
# The watcher syncs checkpoints whenever it is stopped (a fleet's own terminations give no Spot
# notice), so systemd must wait for the hook and the upload at shutdown before killing it.
unit mlplatform-spot-watcher "mlplatform Spot interruption watcher" spot_watcher.py on-failure "$WATCHER_STOP_TIMEOUT_S"
systemctl daemon-reload
systemctl enable mlplatform-gpu-metrics.service mlplatform-spot-watcher.service
systemctl restart mlplatform-gpu-metrics.service mlplatform-spot-watcher.service
if ((NEEDS_REBOOT == 1)); then
  if [[ -e /var/lib/mlplatform/driver-reboot ]]; then
    log "ERROR: the NVIDIA driver still does not load after a reboot; GPU metrics will report errors"
  else
    touch /var/lib/mlplatform/driver-reboot  # once only: never a reboot loop
    log "rebooting once so the new NVIDIA driver loads"
    systemctl --no-block reboot
  fi
fi
log "done"
