# expect: 0
# base: wrong
# why: a connection to a server on the grading machine's loopback
# %% before reparameterize
import socket
try:
    socket.create_connection(("127.0.0.1", {PORT}), timeout=3)
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", exc)
# %% assert
outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
assert "BLOCKED" in outputs and "CONNECTED" not in outputs, outputs
