#!/usr/bin/env python3
"""A TLS-terminating reverse proxy for the tests: serves https:// on
127.0.0.1 with the given certificate and forwards each POST, body and
Content-Type, to a plain-HTTP backend (a real aics-witness), returning its
status and body. Prints "listening on https://127.0.0.1:PORT" on stderr once
it accepts connections. Python's standard library only."""

import argparse
import http.client
import http.server
import ssl
import sys
import urllib.parse

MAX_BODY = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True, help="PEM server certificate chain")
    ap.add_argument("--key", required=True, help="PEM private key")
    ap.add_argument("--backend", required=True, help="http://127.0.0.1:PORT of the witness")
    args = ap.parse_args()
    backend = urllib.parse.urlsplit(args.backend)

    class Front(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            if n < 0 or n > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(n)
            conn = http.client.HTTPConnection(backend.hostname, backend.port, timeout=30)
            try:
                headers = {"Content-Type": self.headers.get("Content-Type", "text/plain")}
                conn.request("POST", backend.path.rstrip("/") + self.path, body, headers)
                r = conn.getresponse()
                data = r.read(MAX_BODY)
                self.send_response(r.status)
                self.send_header("Content-Type", r.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                conn.close()

        def log_message(self, fmt, *a):
            sys.stderr.write("https-front: " + (fmt % a) + "\n")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    sys.stderr.write("listening on https://127.0.0.1:%d\n" % srv.server_address[1])
    sys.stderr.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
