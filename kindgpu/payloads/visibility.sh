#!/bin/sh
# kindgpu smoke, level "visibility": which GPUs does this pod see?
# Runs in a CUDA base image (POSIX sh, no python). Prints the UUIDs nvidia-smi
# lists and the GPU device nodes in the pod, then one final line:
# KINDGPU-RESULT {json}.
# Env: KINDGPU_WORKER (name), KINDGPU_EXPECTED_UUIDS (comma-separated, optional:
# when set, exit 1 unless the visible set equals it), KINDGPU_EXPECT_NONE=1 (a
# CPU-only worker: exit 1 unless the pod sees no GPU; nvidia-smi missing or
# finding no devices counts as none). The smoke task's judge decides either way.

worker=$(printf '%s' "${KINDGPU_WORKER:-unknown}" | tr -cd 'A-Za-z0-9._-')
expect_none=0
[ "${KINDGPU_EXPECT_NONE:-}" = 1 ] && expect_none=1
echo "kindgpu visibility payload: worker ${worker}, pod $(hostname 2>/dev/null || echo '?')"

if command -v nvidia-smi >/dev/null 2>&1; then
  out=$(nvidia-smi --query-gpu=uuid --format=csv,noheader 2>&1)
  rc=$?
else
  # No GPU given to the container: neither the runtime nor a device plugin put nvidia-smi there.
  out="nvidia-smi: not found"
  rc=127
fi
echo "nvidia-smi --query-gpu=uuid --format=csv,noheader: exit ${rc}"
printf '%s\n' "$out" | sed 's/^/  | /'

smi=listed
if [ "$rc" -eq 127 ]; then
  smi=absent
elif [ "$rc" -ne 0 ]; then
  case "$out" in
    "No devices were found"*) smi=no-devices ;;  # nvidia-smi (exit 6): a driver, but no GPU
    *) smi=failed ;;
  esac
fi

uuids=""
json=""
bad=0
count=0
if [ "$rc" -eq 0 ]; then
  while IFS= read -r line; do
    line=$(printf '%s' "$line" | tr -d ' \t\r')
    [ -z "$line" ] && continue
    case "$line" in
      *[!A-Za-z0-9-]*) bad=$((bad + 1)); continue ;;
      GPU-?*|MIG-?*) ;;
      *) bad=$((bad + 1)); continue ;;
    esac
    count=$((count + 1))
    uuids="${uuids}${line}
"
    json="${json}${json:+,}\"${line}\""
  done <<EOF
$out
EOF
fi

# GPU device nodes in the pod: a pod given no GPU must have none, whatever nvidia-smi says.
# (KINDGPU_DEV_DIR: tests run this on hosts whose own /dev they cannot choose.)
devices=""
ndev=0
for f in "${KINDGPU_DEV_DIR:-/dev}"/nvidia[0-9]*; do
  [ -c "$f" ] || continue
  ndev=$((ndev + 1))
  devices="${devices}${devices:+,}\"${f}\""
done
echo "GPU device nodes in this pod: ${ndev}"

dups=$(printf '%s' "$uuids" | sort | uniq -d | tr '\n' ' ')
expected=$(printf '%s' "${KINDGPU_EXPECTED_UUIDS:-}" | tr -cd 'A-Za-z0-9,-')
status=ok
reason=""
if [ "$expect_none" -eq 1 ]; then
  if [ -n "$expected" ]; then
    status=fail; reason="KINDGPU_EXPECT_NONE=1 contradicts KINDGPU_EXPECTED_UUIDS"
  elif [ "$smi" = failed ]; then
    status=fail; reason="nvidia-smi exited ${rc}"
  elif [ "$bad" -ne 0 ]; then
    status=fail; reason="${bad} line(s) of nvidia-smi output are not GPU UUIDs"
  elif [ "$count" -ne 0 ]; then
    status=fail; reason="sees ${count} GPU(s), expected none"
  elif [ "$ndev" -ne 0 ]; then
    status=fail; reason="${ndev} GPU device node(s) in the pod, expected none"
  fi
elif [ "$rc" -ne 0 ]; then
  status=fail; reason="nvidia-smi exited ${rc}"
elif [ "$bad" -ne 0 ]; then
  status=fail; reason="${bad} line(s) of nvidia-smi output are not GPU UUIDs"
elif [ "$count" -eq 0 ]; then
  status=fail; reason="nvidia-smi listed no GPU"
elif [ -n "$dups" ]; then
  status=fail; reason="listed more than once: ${dups% }"
fi

if [ "$status" = ok ] && [ -n "$expected" ]; then
  want=$(printf '%s\n' "$expected" | tr ',' '\n' | sed '/^$/d' | sort -u)
  have=$(printf '%s' "$uuids" | sort -u)
  if [ "$want" != "$have" ]; then
    status=fail; reason="visible GPUs differ from KINDGPU_EXPECTED_UUIDS"
  fi
fi

if [ "$status" = ok ]; then okjson=true; else okjson=false; fi
if [ "$expect_none" -eq 1 ]; then nonejson=true; else nonejson=false; fi
echo "visible GPUs: ${count}; ${status}${reason:+: $reason}"
echo "KINDGPU-RESULT {\"level\":\"visibility\",\"worker\":\"${worker}\",\"ok\":${okjson},\"rc\":${rc},\"bad_lines\":${bad},\"count\":${count},\"uuids\":[${json}],\"expect_none\":${nonejson},\"smi\":\"${smi}\",\"devices\":[${devices}],\"error\":\"${reason}\"}"
[ "$status" = ok ]
