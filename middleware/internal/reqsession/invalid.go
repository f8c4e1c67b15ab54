package reqsession

import (
	"encoding/json"
	"errors"

	"github.com/txoutbox/txoutbox/topics"
)

// InvalidDataMessage is the message of the 422 answer to event data that
// failed its topic's schema.
const InvalidDataMessage = "event data does not match its topic's schema"

// invalidData is the JSON body of that answer.
type invalidData struct {
	Message string `json:"message"`
	Topic   string `json:"topic"`
	Path    string `json:"path"` // JSON pointer into the event's data; "" for the whole
}

// InvalidDataBody returns the JSON body of the 422 answer to err when err
// is, or wraps, a *topics.ValidationError, and whether it is one. The body
// names the topic and the JSON pointer of the failing value in the event's
// data. It leaves out the validator's explanation (Msg, Causes), which can
// quote the data, and with it whatever the handler put there that the
// client should not see.
func InvalidDataBody(err error) ([]byte, bool) {
	var ve *topics.ValidationError
	if !errors.As(err, &ve) {
		return nil, false
	}
	b, _ := json.Marshal(invalidData{Message: InvalidDataMessage, Topic: ve.Topic, Path: ve.Path})
	return append(b, '\n'), true
}
