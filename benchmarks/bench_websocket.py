"""Side-by-side WebSocket client throughput: crtpy vs reference (awscrt)."""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import awscrt.websocket as R
from helpers.ws_server import _recv_request, accept_key, server_frame

import crtpy.websocket as C


class Blaster:
    """After the handshake: mode 'sink' reads and discards; mode 'send' writes N frames of size S."""
    def __init__(self, mode, n=0, size=0):
        self.mode, self.n, self.size = mode, n, size
        self.sock = socket.socket(); self.sock.bind(('127.0.0.1', 0)); self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()
    def run(self):
        while True:
            try: conn, _ = self.sock.accept()
            except OSError: return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()
    def serve(self, conn):
        _, headers = _recv_request(conn)
        key = next(v for k, v in headers if k.lower() == 'sec-websocket-key')
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + "\r\n\r\n").encode())
        if self.mode == 'sink':
            while conn.recv(1 << 20): pass
        else:
            frame = server_frame(2, os.urandom(self.size))
            batch = frame * max(1, (1 << 20) // len(frame))
            per = max(1, (1 << 20) // len(frame))
            sent = 0
            while sent < self.n:
                k = min(per, self.n - sent)
                conn.sendall(batch if k == per else frame * k)
                sent += k
            while conn.recv(65536): pass
        conn.close()

def connect(W, port, target=1 << 60):
    ev = threading.Event(); box = {}
    state = {'bytes': 0, 'frames': 0, 'done': threading.Event(), 'target': target}
    def on_complete(d):
        state['frames'] += 1
        if state['frames'] >= state['target']: state['done'].set()
    def on_payload(d):
        state['bytes'] += len(d.data)
    W.connect(host='127.0.0.1', port=port, handshake_request=W.create_handshake_request(host='127.0.0.1'),
              on_connection_setup=lambda d: (box.setdefault('ws', d.websocket), ev.set()),
              on_incoming_frame_payload=on_payload, on_incoming_frame_complete=on_complete)
    ev.wait(10)
    return box['ws'], state

def bench_send(W, n, size):
    b = Blaster('sink'); ws, _ = connect(W, b.port)
    payload = os.urandom(size); done = threading.Event()
    t = time.perf_counter()
    for i in range(n - 1):
        ws.send_frame(W.Opcode.BINARY, payload)
    ws.send_frame(W.Opcode.BINARY, payload, on_complete=lambda d: done.set())
    done.wait(120)
    dt = time.perf_counter() - t
    ws.close(); b.sock.close()
    return n / dt, n * size / dt / 1e6

def bench_recv(W, n, size):
    b = Blaster('send', n, size)
    t = time.perf_counter()
    ws, st = connect(W, b.port, n)
    st['done'].wait(120)
    dt = time.perf_counter() - t
    ws.close(); b.sock.close()
    return n / dt, n * size / dt / 1e6

for label, fn, n, size in [('send 100 B frames', bench_send, 50_000, 100),
                           ('send 1 MiB frames', bench_send, 200, 1 << 20),
                           ('recv 100 B frames', bench_recv, 50_000, 100),
                           ('recv 1 MiB frames', bench_recv, 200, 1 << 20)]:
    c = fn(C, n, size); r = fn(R, n, size)
    print(f"{label:20s} crtpy {c[0]:10.0f} frames/s {c[1]:8.1f} MB/s | reference {r[0]:10.0f} frames/s {r[1]:8.1f} MB/s | ratio {c[0]/r[0]:.2f}")
