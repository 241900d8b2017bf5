"""Suite-wide setup that must happen before any test module imports grpc."""

import os

# grpc's fork handlers can break the ffmpeg subprocess that MP4 writing starts while gRPC threads run
# (seen as an intermittent BrokenPipe); the CLI sets the same default for the same reason.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
