#!/usr/bin/python3
"""RTSP test server for corecast's end-to-end tests and benchmarks: GStreamer's gst-rtsp-server
(Debian's gir1.2-gst-rtsp-server-1.0) serving a live test pattern at rtsp://127.0.0.1:PORT/test.

    /usr/bin/python3 tests/rtsp_server.py PORT SECONDS [USER PASSWORD] [options]

Runs for SECONDS, then exits. With USER and PASSWORD the mount asks for authentication: Basic
by default, Digest (RFC 2617) with --digest. Options:

    --codec h264|h265   x264enc ! rtph264pay (default) or x265enc ! rtph265pay
    --bframes N         B-frames between references (default 0; x264 then runs without
                        tune=zerolatency, which would turn them off)
    --size WxH          picture size (default 640x360), 30 fps, an IDR every 60 frames
    --bitrate KBPS      encoder bitrate (default 1000)
    --pattern NAME      videotestsrc pattern (default ball; `snow` is noise, which no encoder
                        can compress below its bitrate: what bench/cameras.sh uses for 2 Mbit/s)

The mount is shared: every client of /test gets the same encoder's RTP, so N clients cost
the server one encoder (what bench/cameras.sh relies on).
Run it with Debian's /usr/bin/python3: the GObject bindings (python3-gi) live there.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("port", nargs="?", default="8554")
parser.add_argument("seconds", nargs="?", type=int, default=30)
parser.add_argument("user", nargs="?")
parser.add_argument("password", nargs="?")
parser.add_argument("--digest", action="store_true")
parser.add_argument("--codec", choices=["h264", "h265"], default="h264")
parser.add_argument("--bframes", type=int, default=0)
parser.add_argument("--size", default="640x360")
parser.add_argument("--bitrate", type=int, default=1000)
parser.add_argument("--pattern", default="ball")
args = parser.parse_args()
width, height = args.size.split("x")

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(args.port)
factory = GstRtspServer.RTSPMediaFactory()
if args.codec == "h265":
    encoder = (
        "x265enc speed-preset=ultrafast key-int-max=60 bitrate=%d option-string=bframes=%d%s "
        "! video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=1"
        % (args.bitrate, args.bframes, "" if args.bframes else ":rc-lookahead=0")
    )
    if not args.bframes:
        encoder = encoder.replace("x265enc ", "x265enc tune=zerolatency ")
else:
    tune = "tune=zerolatency " if args.bframes == 0 else "b-adapt=false "
    encoder = (
        "x264enc %sspeed-preset=ultrafast key-int-max=60 bitrate=%d bframes=%d "
        "! video/x-h264,profile=%s ! rtph264pay name=pay0 pt=96 config-interval=1"
        % (tune, args.bitrate, args.bframes, "main" if args.bframes else "constrained-baseline")
    )
factory.set_launch(
    "( videotestsrc is-live=true pattern=%s "
    "! video/x-raw,width=%s,height=%s,framerate=30/1 ! %s )" % (args.pattern, width, height, encoder)
)
factory.set_shared(True)
if args.user is not None:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    if args.digest:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.add_digest(args.user, args.password or "", token)
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(
        Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )
    factory.set_permissions(permissions)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    print("cannot listen on port %s" % args.port, file=sys.stderr, flush=True)
    sys.exit(1)
print("rtsp://127.0.0.1:%s/test" % args.port, flush=True)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(args.seconds, loop.quit)
loop.run()
