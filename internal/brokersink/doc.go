// Package brokersink holds what the broker sinks relaykafka and relaymqtt
// share: topic templates ({tenant}/{category}/{action}) and sending a batch
// in waves that keep each key's order ([Send]).
package brokersink
