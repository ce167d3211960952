"""tilegrid's tt-metal target: environment (setup), the device server (host, runs in the ttnn venv) and its client
(device).  Importing this package imports nothing heavy: setup and device are stdlib (+ numpy)."""
