"""Suite-wide setup that must happen before any test module imports grpc."""

import os

# grpc's fork handlers can break the ffmpeg subprocess that MP4 writing starts while gRPC threads run
# (seen as an intermittent BrokenPipe); the CLI sets the same default for the same reason.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# MKL adjusts its thread count to the machine's load by default, which changes the order of float
# sums, so a busy machine could make the server's frames differ by 1 from the engine's own in a few
# pixels. Fixed thread counts make CPU runs reproducible, which the frame-equality tests rely on.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
