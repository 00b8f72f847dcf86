# A hello app with nothing but Python's standard library.
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGE = os.environ.get("MESSAGE", "Hello from Python on Upscale!")


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (MESSAGE + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


class Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections under any real load.
    request_queue_size = 128


port = int(os.environ.get("PORT", "8080"))
print("listening on port %d" % port, flush=True)
Server(("0.0.0.0", port), Hello).serve_forever()
