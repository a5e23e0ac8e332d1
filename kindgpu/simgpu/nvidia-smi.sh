#!/usr/local/kindgpu/bin/busybox sh
# A fake nvidia-smi for pods given simulated GPUs by kindgpu's device plugin (plugin.py).
#
# The plugin mounts this script at /usr/bin/nvidia-smi and a static busybox at the path on the
# first line, which runs it: the pod's image needs no shell and no interpreter. The GPUs are in
# $KINDGPU_SIM_GPUS, one per line, in the order NVML enumerates them (by PCI bus id):
#     <uuid> <minor number> <PCI bus id> <memory MiB> <product name>
# A GPU's place in that list is its index (0..n-1, as a real container's nvidia-smi numbers the
# GPUs it sees); the rest is the host's, as kindgpu's plan says. The output copies the real
# nvidia-smi's formats, so scripts that parse them work unchanged.
#
# `nvidia-smi -q` prints the real one's per-GPU report, cut to what a simulated GPU has, plus a section
# the real one lacks, "Simulated Faults (kindgpu)": the Xid `invoke fault` gave the GPU ("None" when
# healthy). A real GPU's Xids are in the host's kernel log (`NVRM: Xid (PCI:0000:10:00): 79, ...`), which
# a container cannot read; kindgpu writes them to $KINDGPU_SIM_XIDS instead, "<uuid> <xid>" per line,
# in a directory the plugin mounts into the container, so a fault shows in running pods too.
#
# POSIX sh with builtins only (busybox ash, dash): the one command it runs is busybox's date.

BUSYBOX=/usr/local/kindgpu/bin/busybox
DRIVER_VERSION=simulated # what kindgpu's simulated inventory reports too
CUDA_VERSION=N/A
MIG_MODE=Disabled
XIDS=${KINDGPU_SIM_XIDS:-/usr/local/kindgpu/health/xids}
NO_DEVICES=6 # nvidia-smi's exit status when NVML finds no GPU
BAD_ARGUMENT=2 # nvidia-smi's exit status for an invalid argument
NL='
'
set -f # values are never file patterns

fail() { # status, message: on stderr, as nvidia-smi does
    printf '%s\n' "$2" >&2
    exit "$1"
}

trim() { # $1 without leading and trailing spaces, in $trimmed
    trimmed=${1#"${1%%[! ]*}"}
    trimmed=${trimmed%"${trimmed##*[! ]}"}
}

usage() {
    printf '%s\n' "nvidia-smi, simulated by kindgpu: the GPUs kindgpu's device plugin gave this container" \
        '' \
        '    nvidia-smi                       the summary table' \
        '    nvidia-smi -L, --list-gpus       one line per GPU: index, name, UUID' \
        '    nvidia-smi -q, --query           a report per GPU, with the Xid kindgpu injected (invoke fault)' \
        '    nvidia-smi --query-gpu=FIELD,... --format=csv[,noheader][,nounits]' \
        '        FIELD: index, count, uuid, name, pci.bus_id, memory.total, memory.used, memory.free,' \
        '               driver_version, mig.mode.current, minor_number (or gpu_uuid, gpu_name, gpu_bus_id)' \
        '    -i, --id=ID,...                  only these GPUs, by index or UUID'
}

# Arguments, as the real nvidia-smi takes them (`--opt=value` or `--opt value`).
list=
report=
query=
format=csv
ids=
while [ $# -gt 0 ]; do
    case $1 in
        -L | --list-gpus) list=1 ;;
        -q | --query) report=1 ;;
        -h | --help) usage; exit 0 ;;
        --query-gpu=* | --format=* | --id=*)
            value=${1#*=}
            case $1 in
                --query-gpu=*) query=$value ;;
                --format=*) format=$value ;;
                *) ids=$value ;;
            esac ;;
        --query-gpu | --format | -i | --id)
            [ $# -ge 2 ] || fail $BAD_ARGUMENT "Option $1 needs a value. Please run 'nvidia-smi -h' for help."
            case $1 in
                --query-gpu) query=$2 ;;
                --format) format=$2 ;;
                *) ids=$2 ;;
            esac
            shift ;;
        -i*) ids=${1#-i} ;;
        *) fail $BAD_ARGUMENT "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help." ;;
    esac
    shift
done

count=0
IFS=$NL
for line in ${KINDGPU_SIM_GPUS-}; do
    [ -n "$line" ] && count=$((count + 1))
done
IFS=' '
if [ "$count" -eq 0 ]; then
    printf 'No devices were found\n'
    exit $NO_DEVICES
fi

# -i: indices or UUIDs, comma-separated; the selected GPUs keep their indices.
wanted=
wanted_count=0
if [ -n "$ids" ]; then
    IFS=,
    for id in $ids; do
        trim "$id"
        wanted="$wanted,$trimmed"
        wanted_count=$((wanted_count + 1))
    done
    IFS=' '
    wanted="$wanted,"
fi

# each_gpu FUNCTION: call it once per selected GPU, with index, uuid, minor, bus, memory and name set.
each_gpu() {
    index=0
    IFS=$NL
    for line in $KINDGPU_SIM_GPUS; do
        IFS=' '
        [ -n "$line" ] || continue
        uuid=${line%% *} rest=${line#* }
        minor=${rest%% *} rest=${rest#* }
        bus=${rest%% *} rest=${rest#* }
        memory=${rest%% *} name=${rest#* }
        case $wanted in
            "" | *",$index,"* | *",$uuid,"*) "$1" ;;
        esac
        index=$((index + 1))
    done
    IFS=' '
}

count_selected() { selected=$((selected + 1)); }
if [ -n "$wanted" ]; then
    selected=0
    each_gpu count_selected
    [ "$selected" -eq "$wanted_count" ] || fail $NO_DEVICES "No devices were found matching $ids"
fi

print_listed() {
    printf 'GPU %s: %s (UUID: %s)\n' "$index" "$name" "$uuid"
}

# --query-gpu: canonical field names, the aliases nvidia-smi also takes, and their units.
canonical() {
    case $1 in
        gpu_uuid) field=uuid ;;
        gpu_name) field=name ;;
        gpu_bus_id) field=pci.bus_id ;;
        *) field=$1 ;;
    esac
    case $field in
        memory.total | memory.used | memory.free) unit=MiB ;;
        index | count | uuid | name | pci.bus_id | driver_version | mig.mode.current | minor_number) unit= ;;
        *) fail $BAD_ARGUMENT "Field \"$field\" is not a valid field to query." ;;
    esac
}

field_value() {
    case $1 in
        index) value=$index ;;
        count) value=$count ;;
        uuid) value=$uuid ;;
        name) value=$name ;;
        pci.bus_id) value=$bus ;;
        memory.total | memory.free) value=$memory ;;
        memory.used) value=0 ;;
        driver_version) value=$DRIVER_VERSION ;;
        mig.mode.current) value=$MIG_MODE ;;
        minor_number) value=$minor ;;
    esac
}

print_query_row() {
    row=
    IFS=' '
    for field in $fields; do
        canonical "$field"
        field_value "$field"
        [ -z "$unit" ] || [ -n "$nounits" ] || value="$value $unit"
        row="$row${row:+, }$value"
    done
    printf '%s\n' "$row"
}

query_gpus() {
    fields=
    IFS=,
    for field in $query; do
        trim "$field"
        [ -n "$trimmed" ] || continue
        canonical "$trimmed"
        fields="$fields $field"
    done
    noheader=
    nounits=
    for option in $format; do
        trim "$option"
        case $trimmed in
            noheader) noheader=1 ;;
            nounits) nounits=1 ;;
        esac
    done
    IFS=' '
    if [ -z "$noheader" ]; then
        # The header keeps its units even with nounits, as the real one does.
        header=
        for field in $fields; do
            canonical "$field"
            header="$header${header:+, }$field${unit:+ [$unit]}"
        done
        printf '%s\n' "$header"
    fi
    each_gpu print_query_row
}

# Plain `nvidia-smi`: the real table's layout, saying that the GPUs are simulated.
RULE='+-----------------------------------------+------------------------+----------------------+'
LINE='+-----------------------------------------------------------------------------------------+'

print_banner_gpu() {
    printf '|%4s  %-31.31sOn  |%19s Off |%21s |\n' "$index" "$name" "$bus" 0
    printf '| N/A   N/A    P0%24s |%23s |%8s%13s |\n' 'N/A /  N/A' "0MiB / ${memory}MiB" 0% Default
    printf '|%41s|%24s|%21s |\n' '' '' "$MIG_MODE"
    printf '%s\n' "$RULE"
}

banner() {
    if [ -x "$BUSYBOX" ]; then
        "$BUSYBOX" date '+%a %b %d %H:%M:%S %Y'
    else
        date '+%a %b %d %H:%M:%S %Y'
    fi
    printf '%s\n' "$LINE"
    printf '|%-89s|\n' " NVIDIA-SMI simulated by kindgpu   Driver Version: $DRIVER_VERSION   CUDA Version: $CUDA_VERSION"
    printf '%s\n' "$RULE"
    printf '|%-41s|%-24s|%-22s|\n' \
        ' GPU  Name                 Persistence-M' ' Bus-Id          Disp.A' ' Volatile Uncorr. ECC' \
        ' Fan  Temp   Perf          Pwr:Usage/Cap' '           Memory-Usage' ' GPU-Util  Compute M.' \
        '' '' '               MIG M.'
    printf '|=========================================+========================+======================|\n'
    each_gpu print_banner_gpu
    printf '\n%s\n' "$LINE"
    printf '|%-89s|\n' \
        ' Processes:' \
        '  GPU   GI   CI              PID   Type   Process name                        GPU Memory' \
        '        ID   ID                                                               Usage'
    printf '|=========================================================================================|\n'
    printf '|%-89s|\n' '  No running processes found'
    printf '%s\n' "$LINE"
}

# -q: the real report's layout (names padded to column 42), the fields a simulated GPU has.
xid_of() { # the Xid injected into GPU $uuid, in $xid ("None" when none)
    xid=None
    [ -r "$XIDS" ] || return 0
    while read -r fault_uuid fault_xid; do
        [ "$fault_uuid" = "$uuid" ] && xid=$fault_xid
    done <"$XIDS"
}

print_report_gpu() {
    xid_of
    printf 'GPU %s\n' "$bus"
    printf '    %-38s: %s\n' 'Product Name' "$name" 'Minor Number' "$minor" 'GPU UUID' "$uuid"
    printf '    PCI\n'
    printf '        %-34s: %s\n' 'Bus Id' "$bus"
    printf '    FB Memory Usage\n'
    printf '        %-34s: %s\n' Total "$memory MiB" Used '0 MiB' Free "$memory MiB"
    printf '    Simulated Faults (kindgpu)\n'
    printf '        %-34s: %s\n' 'Last Xid' "$xid"
}

report() {
    printf '\n==============NVSMI LOG==============\n\n'
    if [ -x "$BUSYBOX" ]; then
        stamp=$("$BUSYBOX" date '+%a %b %d %H:%M:%S %Y')
    else
        stamp=$(date '+%a %b %d %H:%M:%S %Y')
    fi
    printf '%-42s: %s\n' Timestamp "$stamp" 'Driver Version' "$DRIVER_VERSION" 'CUDA Version' "$CUDA_VERSION"
    printf '\n%-42s: %s\n' 'Attached GPUs' "$count"
    each_gpu print_report_gpu
}

if [ -n "$list" ]; then
    each_gpu print_listed
elif [ -n "$report" ]; then
    report
elif [ -n "$query" ]; then
    query_gpus
else
    banner
fi
