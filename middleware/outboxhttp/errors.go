package outboxhttp

import (
	"net/http"

	"github.com/txoutbox/txoutbox/middleware/internal/reqsession"
)

// WriteValidationError answers 422 Unprocessable Entity when err carries a
// *topics.ValidationError (Publish refusing data that fails its topic's
// schema), and reports whether it did; the handler answers any other error
// itself:
//
//	if err != nil {
//		if !outboxhttp.WriteValidationError(w, err) {
//			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
//		}
//		return
//	}
//
// The JSON body names the topic and the JSON pointer of the failing value
// in the event's data:
//
//	{"message":"event data does not match its topic's schema","topic":"billing.InvoiceCreated","path":"/amount_cents"}
//
// It leaves out the validator's explanation, which can quote the data and
// so whatever the handler put in it that the client should not see; log the
// error to keep it. The path is into the event's data, which is the
// request's fields only where the handler copies them over.
func WriteValidationError(w http.ResponseWriter, err error) bool {
	body, ok := reqsession.InvalidDataBody(err)
	if !ok {
		return false
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnprocessableEntity)
	_, _ = w.Write(body)
	return true
}
