package eventsapi

// The EventService's Go code (eventsv1, eventsv1/eventsv1connect) is
// generated from proto/txoutbox/events/v1/events.proto and committed. After
// changing the .proto, regenerate it with
//
//	go generate ./eventsapi
//
// which runs scripts/genproto: protoc (Debian's protobuf-compiler, installed
// when missing) with protoc-gen-go and protoc-gen-connect-go at pinned
// versions, installed with go install from the module proxy. .ci/run
// regenerates into a scratch directory and fails when the committed code
// differs.

//go:generate ../scripts/genproto ..
