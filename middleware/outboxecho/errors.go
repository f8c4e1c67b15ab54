package outboxecho

import (
	"github.com/labstack/echo/v4"

	"github.com/txoutbox/txoutbox/middleware/internal/reqsession"
)

// ErrorHandler returns an Echo HTTPErrorHandler that answers a handler's
// error carrying a *topics.ValidationError (Publish refusing data that
// fails its topic's schema) with 422 Unprocessable Entity instead of a
// bare 500, and hands every other error to next (nil for Echo's default):
//
//	e.HTTPErrorHandler = outboxecho.ErrorHandler(e.DefaultHTTPErrorHandler)
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
	return func(err error, c echo.Context) {
		if !c.Response().Committed {
			if ok, werr := reqsession.AnswerInvalidData(c, err); ok {
				if werr != nil {
					c.Logger().Error(werr)
				}
				return
			}
		}
		if next != nil {
			next(err, c)
		} else {
			c.Echo().DefaultHTTPErrorHandler(err, c)
		}
	}
}
