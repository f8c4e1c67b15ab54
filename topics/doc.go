// Package topics reads a service's topic definitions, finds a topic by name
// and checks event data against it before anything is written to the
// outbox.
//
// # The definitions file
//
// Definitions live in topic_definitions.yaml, in the format the Python
// bc-events client reads, so a service that has the file already needs no
// changes:
//
//	DefaultCategory: billing              # ^[a-z]+$
//	Topics:
//	  - Action: Created                   # ^[A-Z][a-z]+$, past tense
//	    Entity: Invoice                   # ^([A-Z][a-z]+)+$
//	    Category: billing                 # optional; defaults to DefaultCategory
//	    Description: A new invoice was issued # optional
//	    Schema:                           # JSON Schema (2020-12) of the event's data
//	      type: object
//	      required: [id, amount_cents]
//	      properties:
//	        id: {type: string}
//	        amount_cents: {type: integer, minimum: 0}
//
// A topic's name is {Category}.{Entity}{Action}: billing.InvoiceCreated.
// txoutbox adds optional keys the Python client ignores: a top-level
// Version (only 1 exists), and per topic Key (the JSON pointer of the
// ordering key in the data, default /id), Version (of the data's schema,
// default 1) and Poison (block or skip: what the relay does with a key's
// later events once one was dead-lettered).
//
// # Loading
//
// [Load] reads the file and checks everything at once: unknown or missing
// keys, names that break the patterns above, duplicate topics (also ones
// that differ only in case or underscores), invalid JSON Schemas, a Key
// the schema does not guarantee. Every problem comes back in one
// [*LoadError], each with file, line and column and usually a hint:
//
//	reg, err := topics.Load("topic_definitions.yaml")
//	if err != nil {
//		log.Fatal(err) // topic_definitions.yaml:7:5: unknown key "Entitiy" in a topic (hint: did you mean "Entity"?)
//	}
//
// Schemas are JSON Schema 2020-12 unless their $schema names another draft.
// A few rules keep a file meaning the same to the Python client and to Go,
// and keep loading cheap and self-contained:
//
//   - $ref may only point inside the topic's own schema ("#/$defs/..."):
//     loading never reads other files or the network;
//   - patterns use Go's RE2 syntax (no lookaround, no backreferences);
//   - unquoted yes, no, on and off are refused: YAML 1.1 readers such as
//     the Python client take them for booleans;
//   - YAML anchors, aliases and merge keys work, but aliases may expand to
//     at most 10,000 nodes, schemas nest at most 64 levels and the file is
//     at most [MaxSizeDefault] bytes ([WithMaxSize]).
//
// A Key written in the file must be guaranteed by the schema: each step a
// required property of an object, ending at a string or an integer. The
// default key /id is not checked, so files written for the Python client
// load as they are; data without an id then has the key "", and those
// events are ordered together.
//
// A [Registry] never changes after loading and is safe for concurrent use;
// load it once at start-up.
//
// # Looking up and validating
//
// [Registry.Lookup] takes the category (empty for the default), entity and
// action in any common spelling — "Created", "created"; "LineItem",
// "line_item", "lineItem" — and does not allocate. [Topic.Validate] checks
// an event's JSON data and returns its ordering key:
//
//	t, err := reg.Lookup("", "invoice", "created")
//	if err != nil {
//		return err // *UnknownTopicError, matches ErrUnknownTopic
//	}
//	key, err := t.Validate(data)
//	var verr *topics.ValidationError
//	if errors.As(err, &verr) {
//		// verr.Topic, verr.Path ("/amount_cents") and verr.Msg say what is wrong
//	}
//
// Data must be a JSON object with at least one property, as the events API
// requires, and match the topic's schema. The JSON Schema "format" keyword
// is an annotation unless [WithFormatAssertions] is given, as in bc-events.
package topics
