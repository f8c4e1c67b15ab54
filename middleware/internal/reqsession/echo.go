package reqsession

import (
	"encoding/json"
	"net/http"
)

// EchoResponse is the part of an Echo response the Echo middleware packages
// use. Echo v4 and v5 spell it alike, on different types; each package
// adapts its own.
type EchoResponse interface {
	// Before registers fn to run as the status goes out, while the status
	// and the writer can still change.
	Before(fn func())
	// State returns the status set so far and whether it was sent.
	State() (status int, committed bool)
	// Fail swaps in Fail's writer with body, so that the response becomes
	// a JSON 500.
	Fail(body []byte)
}

// ServeEcho runs the handler next(c) of a request whose session r opened,
// the part of the Echo middleware that does not depend on Echo's version:
// the unflushed check as the status goes out (strict mode answers 500
// there), the events dropped when the handler fails or panics, the check
// for a handler that answered nothing, and Session.Committed after a
// handler that succeeded. strictError turns the
// *UnflushedError of that last case into the error Echo's error handler
// answers with 500.
func ServeEcho[C any](r *Request, res EchoResponse, next func(C) error, c C, strictError func(error) error) error {
	res.Before(func() {
		status, _ := res.State()
		if err := r.Written(status); err != nil {
			res.Fail(JSONMessage(err))
		}
	})

	returned := false
	defer func() {
		if !returned { // the handler panicked: let the panic go on, minus the events
			r.Drop("handler panicked")
		}
	}()
	err := next(c)
	returned = true

	if err != nil {
		r.Drop("handler returned an error")
		return err
	}
	status, sent := res.State()
	if err := r.Finish(status); err != nil && !sent {
		return strictError(err)
	}
	return nil
}

// FailStatus is the status an EchoResponse's Fail sets.
const FailStatus = http.StatusInternalServerError

// JSONMessage is err's message as the JSON body Echo answers errors with.
func JSONMessage(err error) []byte {
	b, _ := json.Marshal(map[string]string{"message": err.Error()})
	return append(b, '\n')
}

// EchoContext is the part of an Echo context, v4's echo.Context or v5's
// *echo.Context, that AnswerInvalidData uses.
type EchoContext interface {
	Request() *http.Request
	NoContent(code int) error
	JSONBlob(code int, b []byte) error
}

// AnswerInvalidData answers err with 422 and InvalidDataBody when err
// carries a *topics.ValidationError, and reports whether it did, with the
// error of writing the answer. The Echo packages' ErrorHandler call it on a
// response not yet committed.
func AnswerInvalidData(c EchoContext, err error) (answered bool, writeErr error) {
	body, ok := InvalidDataBody(err)
	if !ok {
		return false, nil
	}
	if c.Request().Method == http.MethodHead {
		return true, c.NoContent(http.StatusUnprocessableEntity)
	}
	return true, c.JSONBlob(http.StatusUnprocessableEntity, body)
}
