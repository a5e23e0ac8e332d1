#!/bin/sh
# kindgpu smoke, level "visibility": which GPUs does this pod see?
# Runs in a CUDA base image (POSIX sh, no python). Prints the UUIDs nvidia-smi
# lists, then one final line: KINDGPU-RESULT {json}.
# Env: KINDGPU_WORKER (name), KINDGPU_EXPECTED_UUIDS (comma-separated, optional:
# when set, exit 1 unless the visible set equals it; the smoke task's judge
# decides either way).

worker=$(printf '%s' "${KINDGPU_WORKER:-unknown}" | tr -cd 'A-Za-z0-9._-')
echo "kindgpu visibility payload: worker ${worker}, pod $(hostname 2>/dev/null || echo '?')"

out=$(nvidia-smi --query-gpu=uuid --format=csv,noheader 2>&1)
rc=$?
echo "nvidia-smi --query-gpu=uuid --format=csv,noheader: exit ${rc}"
printf '%s\n' "$out" | sed 's/^/  | /'

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

dups=$(printf '%s' "$uuids" | sort | uniq -d | tr '\n' ' ')
status=ok
reason=""
if [ "$rc" -ne 0 ]; then
  status=fail; reason="nvidia-smi exited ${rc}"
elif [ "$bad" -ne 0 ]; then
  status=fail; reason="${bad} line(s) of nvidia-smi output are not GPU UUIDs"
elif [ "$count" -eq 0 ]; then
  status=fail; reason="nvidia-smi listed no GPU"
elif [ -n "$dups" ]; then
  status=fail; reason="listed more than once: ${dups% }"
fi

expected=$(printf '%s' "${KINDGPU_EXPECTED_UUIDS:-}" | tr -cd 'A-Za-z0-9,-')
if [ "$status" = ok ] && [ -n "$expected" ]; then
  want=$(printf '%s\n' "$expected" | tr ',' '\n' | sed '/^$/d' | sort -u)
  have=$(printf '%s' "$uuids" | sort -u)
  if [ "$want" != "$have" ]; then
    status=fail; reason="visible GPUs differ from KINDGPU_EXPECTED_UUIDS"
  fi
fi

if [ "$status" = ok ]; then okjson=true; else okjson=false; fi
echo "visible GPUs: ${count}; ${status}${reason:+: $reason}"
echo "KINDGPU-RESULT {\"level\":\"visibility\",\"worker\":\"${worker}\",\"ok\":${okjson},\"rc\":${rc},\"bad_lines\":${bad},\"count\":${count},\"uuids\":[${json}],\"error\":\"${reason}\"}"
[ "$status" = ok ]
