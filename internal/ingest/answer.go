package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Codes of error answers: the "code" of the error object and, on the ingest
// routes, the bc-events "errorType". The bc-events API names them so.
const (
	// CodeBadRequest: the request cannot be read (malformed JSON, a body of
	// the wrong shape, a malformed header, a bad parameter).
	CodeBadRequest = "BadRequest"
	// CodeValidation: an event breaks the wire format's rules, the envelope
	// limits or the topic catalog. Senders treat it as permanent.
	CodeValidation = "ValidationError"
	// CodeDuplicate: the single event posted was stored before.
	CodeDuplicate = "Duplicate"
	// CodePayloadTooLarge: the body is larger than the server takes.
	CodePayloadTooLarge = "PayloadTooLarge"
	// CodeUnsupportedMediaType: the Content-Type is not the route's.
	CodeUnsupportedMediaType = "UnsupportedMediaType"
	// CodeUnauthorized: no credential, or one the server does not know.
	CodeUnauthorized = "Unauthorized"
	// CodeForbidden: the credential does not allow the request.
	CodeForbidden = "Forbidden"
	// CodeNotFound: no such event.
	CodeNotFound = "NotFound"
	// CodeTooManyRequests: a limit on requests was reached; retry later.
	CodeTooManyRequests = "TooManyRequests"
	// CodeUnavailable: the events could not be stored or read now; retry.
	CodeUnavailable = "Unavailable"
	// CodeInternal: the server went wrong.
	CodeInternal = "InternalError"
)

// ErrorInfo is the error object of every error answer: a code from the list
// above and a message for people.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody is the body of an error answer. ErrorType and ErrorMessage
// repeat the error object in the bc-events shape; they are set on the
// ingest routes only.
type ErrorBody struct {
	Error        ErrorInfo `json:"error"`
	ErrorType    string    `json:"errorType,omitempty"`
	ErrorMessage string    `json:"errorMessage,omitempty"`
}

// Error is a post refused as a whole. [Config.StoreFunc] returns one to
// choose the answer; the handler answers it on its own too.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as Retry-After, in seconds.
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers status with the error object {"error":{code,message}}.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorInfo{Code: code, Message: message}})
}

// Answer answers a post refused on an ingest route: the error object and
// its bc-events twin.
func Answer(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	WriteJSON(w, e.Status, errorBody(e.Code, e.Message))
}

func errorBody(code, message string) ErrorBody {
	return ErrorBody{Error: ErrorInfo{Code: code, Message: message}, ErrorType: code, ErrorMessage: message}
}

// RecordError says why the event at Index of a bulk post or batch failed.
type RecordError struct {
	Index        int    `json:"index"`
	ID           string `json:"id,omitempty"`
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// BriteBulkAnswer is the answer to a bc-events bulk post, with the server's
// additions: duplicates counted, and why each failed record failed; senders
// ignore fields they do not know.
type BriteBulkAnswer struct {
	FailedRecords int           `json:"failedRecords"`
	Records       []string      `json:"records"`
	Duplicates    int           `json:"duplicates"`
	Errors        []RecordError `json:"errors,omitempty"`
}

// briteBulkRejection is the answer to a bulk post refused as a whole
// because records break EVENT_SCHEMA.
type briteBulkRejection struct {
	ErrorBody
	Errors []RecordError `json:"errors"`
}

// CloudEventsAnswer is the answer to a CloudEvents post.
type CloudEventsAnswer struct {
	Accepted   int          `json:"accepted"`
	Duplicates int          `json:"duplicates"`
	Error      *ErrorInfo   `json:"error,omitempty"`
	Failed     []FailedItem `json:"failed,omitempty"`
}

// FailedItem is an event of a CloudEvents post that failed validation.
type FailedItem struct {
	Index int    `json:"index"`
	ID    string `json:"id"`
	Error string `json:"error"`
}
