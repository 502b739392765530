"""The Open Inference Protocol (KServe V2) over gRPC: servicer, health, reflection, server.

A transport beside `service.api`: it translates protobuf to calls on the core through
`service.protocol`, as the HTTP routes translate JSON. Only the composition root imports it.
"""
