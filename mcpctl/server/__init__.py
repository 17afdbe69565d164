"""gRPC side of a node: servicers (thin), error mapping, server lifecycle."""
