module kindgpu.local/harness/kindnetd

go 1.22
