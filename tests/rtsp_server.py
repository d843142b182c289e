#!/usr/bin/python3
"""RTSP test server for corecast's end-to-end tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0) serving a live H.264 test pattern, 640x360 at 30 fps, an IDR
every 60 frames, at rtsp://127.0.0.1:PORT/test.

    /usr/bin/python3 tests/rtsp_server.py PORT SECONDS [USER PASSWORD]

Runs for SECONDS, then exits. With USER and PASSWORD the mount asks for Basic auth.
Run it with Debian's /usr/bin/python3: the GObject bindings (python3-gi) live there.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port = sys.argv[1] if len(sys.argv) > 1 else "8554"
seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 30

server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=640,height=360,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1000 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
if len(sys.argv) > 4:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[3], sys.argv[4]), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(
        Gst.Structure.new_from_string("user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")
    )
    factory.set_permissions(permissions)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    print("cannot listen on port %s" % port, file=sys.stderr, flush=True)
    sys.exit(1)
print("rtsp://127.0.0.1:%s/test" % port, flush=True)
loop = GLib.MainLoop()
GLib.timeout_add_seconds(seconds, loop.quit)
loop.run()
