package reqsession_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/middleware/internal/reqsession"
	"github.com/txoutbox/txoutbox/topics"
)

// TestInvalidDataBody checks the body names the topic and the path, and
// nothing of the validator's explanation, which can quote the data.
func TestInvalidDataBody(t *testing.T) {
	ve := &topics.ValidationError{
		Topic: "billing.CustomerCreated", Category: "billing", Entity: "Customer", Action: "Created",
		Path: "/email", Msg: "'ada@private.example' is not valid email",
		Causes: []string{"/email: 'ada@private.example' is not valid email"},
	}
	body, ok := reqsession.InvalidDataBody(fmt.Errorf("create customer: %w", ve))
	want := `{"message":"event data does not match its topic's schema","topic":"billing.CustomerCreated","path":"/email"}` + "\n"
	if !ok || string(body) != want {
		t.Errorf("InvalidDataBody = %q, %v; want %q, true", body, ok, want)
	}
	if strings.Contains(string(body), "ada@") {
		t.Errorf("the body quotes the data: %s", body)
	}
	for _, err := range []error{
		errors.New("insert invoice: connection refused"),
		&topics.UnknownTopicError{Category: "billing", Entity: "Invoice", Action: "Creatd"},
		nil,
	} {
		if body, ok := reqsession.InvalidDataBody(err); ok || body != nil {
			t.Errorf("InvalidDataBody(%v) = %q, true; want nil, false", err, body)
		}
	}
}
