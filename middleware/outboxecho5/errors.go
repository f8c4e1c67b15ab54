package outboxecho5

import (
	"github.com/labstack/echo/v5"

	"github.com/txoutbox/txoutbox/middleware/internal/reqsession"
)

// ErrorHandler returns an Echo HTTPErrorHandler that answers a handler's
// error carrying a *topics.ValidationError (Publish refusing data that
// fails its topic's schema) with 422 Unprocessable Entity instead of a
// bare 500, and hands every other error to next (nil for
// echo.DefaultHTTPErrorHandler(false)):
//
//	e.HTTPErrorHandler = outboxecho5.ErrorHandler(e.HTTPErrorHandler)
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
func ErrorHandler(next echo.HTTPErrorHandler) echo.HTTPErrorHandler {
	if next == nil {
		next = echo.DefaultHTTPErrorHandler(false)
	}
	return func(c *echo.Context, err error) {
		if res, _ := echo.UnwrapResponse(c.Response()); res == nil || !res.Committed {
			if ok, werr := reqsession.AnswerInvalidData(c, err); ok {
				if werr != nil {
					c.Logger().Error("outboxecho5: answer invalid event data", "error", werr)
				}
				return
			}
		}
		next(c, err)
	}
}
