package eventsapi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
)

// grpcFrame is msg in gRPC's length-prefixed framing.
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// FuzzRPCFrames sends malformed requests to the EventService — Connect
// unary bodies in JSON and protobuf, gRPC frames on a unary call and on a
// stream — and checks that none crashes the server (a panic the server
// recovers from is logged, and fails the test) or disturbs another stream,
// which answers a ping after each.
func FuzzRPCFrames(f *testing.F) {
	r := startRPC(f, rpcOptions{registry: true})
	cc := dial(f, r.addr)
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	healthy := openStream(ctx, f, cc, rpcAll)

	valid, _ := proto.Marshal(&eventsv1.EventsStreamRequest{CorrelationId: "c", Request: &eventsv1.EventsStreamRequest_Subscribe{
		Subscribe: &eventsv1.Subscribe{Name: "billing.*", Target: &eventsv1.Target{Collection: "c"}}}})
	pub, _ := proto.Marshal(invoice("inv-1", 5))
	for _, seed := range [][]byte{
		valid, pub, valid[:len(valid)/2], {0xff, 0xff, 0xff, 0xff, 0x0f}, {0x0a, 0x80, 0x80, 0x80, 0x80, 0x10},
		[]byte(`{"name":"billing.InvoiceCreated","payload":{"id":"x","amount_cents":1}}`), []byte(`{"name":`), []byte(`{"store":"yes"}`),
		[]byte(`{"payload":{"a":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}}`),
	} {
		for kind := range uint8(4) {
			f.Add(seed, kind)
		}
	}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: h2, Timeout: 5 * time.Second}

	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		var req *http.Request
		base := "http://" + r.addr + "/txoutbox.events.v1.EventService/"
		auth := "Bearer " + rpcAll
		switch kind % 4 {
		case 0: // Connect unary, JSON
			req = httptest.NewRequest(http.MethodPost, base+"Publish", bytes.NewReader(data))
			req.Header.Set("Content-Type", "application/json")
		case 1: // Connect unary, protobuf
			req = httptest.NewRequest(http.MethodPost, base+"Publish", bytes.NewReader(data))
			req.Header.Set("Content-Type", "application/proto")
		case 2: // gRPC unary, one frame
			req = httptest.NewRequest(http.MethodPost, base+"Publish", bytes.NewReader(grpcFrame(data)))
			req.Header.Set("Content-Type", "application/grpc")
		case 3: // gRPC stream: a frame that may be malformed, then raw bytes
			body := append(grpcFrame(data), data...)
			var err error
			req, err = http.NewRequest(http.MethodPost, base+"StreamEvents", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
		}
		req.Header.Set("Authorization", auth)
		if kind%4 == 3 {
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
				_ = resp.Body.Close()
			}
		} else {
			rec := httptest.NewRecorder()
			req.RemoteAddr = "127.0.0.1:1234"
			r.srv.ServeHTTP(rec, req)
			if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("answered %d: %s", rec.Code, rec.Body.String())
			}
		}
		if strings.Contains(r.log.String(), "panicked") {
			t.Fatalf("the server panicked:\n%s", r.log.String())
		}
		healthy.t = t
		healthy.send("ping", pingReq())
		if m := healthy.next(); m.GetPong() == nil {
			t.Fatalf("the other stream answered %v", m)
		}
	})
}
