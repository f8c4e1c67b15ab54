// Package relayhttp delivers the relay's events to an events API over
// HTTP(S), in the bc-events wire format or as CloudEvents.
//
//	sink, err := relayhttp.New(&relayhttp.Config{
//		URL:         "https://events.example.com",
//		Format:      relayhttp.FormatBriteEvents, // or FormatCloudEvents, the default
//		BearerToken: token,                       // never logged, nor in errors
//	})
//	if err != nil {
//		return err // wraps relay.ErrInvalidConfig, naming the field
//	}
//	defer sink.Close()
//	r, err := relay.New(pool, sink, nil)
//
// The bc-events format posts one event to {URL}/events and several of one
// job to {URL}/events/bulk/, with the body the API validates and the rest
// of the envelope in headers (the job id in x-britecore-job-id, the event id
// in Idempotency-Key). CloudEvents posts batches of CloudEvents 1.0 JSON to
// URL (application/cloudevents-batch+json); type is the topic, subject the
// ordering key.
//
// A relay batch goes out in as few requests as Config.MaxBatch allows. The
// API's answers become the relay's outcomes: 2xx and 409 deliver, 408, 429,
// 5xx and connection errors are retried (honouring Retry-After), other 4xx
// dead-letter the events they concern, narrowed down request by request.
// After a request fails, the rest of the batch waits for the next round
// without counting an attempt, unless the API answered that request alone
// with an error (a 500 of a flaky API). See [Sink] for the whole mapping.
package relayhttp
