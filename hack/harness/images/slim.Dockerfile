# Component image on the harness's slim Debian rootfs (shell, iptables,
# nftables, conntrack, iproute2). BIN is copied to /usr/local/bin.
ARG SLIM
FROM ${SLIM}
COPY bin/ /usr/local/bin/
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
