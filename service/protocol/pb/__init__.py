"""Generated protobuf messages (`make grpc-code`): the Open Inference Protocol over gRPC."""
