package eventsapi

// The EventService's Go code (eventsv1, eventsv1/eventsv1connect) is
// generated from proto/txoutbox/events/v1/events.proto and committed. To
// regenerate after changing the .proto, install the tools once and run
// go generate from the repository root:
//
//	go install github.com/bufbuild/buf/cmd/buf@v1.75.0
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1
//	go generate ./eventsapi
//
// .ci/run regenerates and fails when the committed code differs.

//go:generate sh -c "cd .. && buf generate"
