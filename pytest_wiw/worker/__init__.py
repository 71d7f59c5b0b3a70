"""Worker processes: the server that holds a world model, its client, and the wire protocol between them."""
