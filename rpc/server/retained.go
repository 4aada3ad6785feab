package server

import (
	"context"
	"strings"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm/logpb"
	"github.com/metamq/meta/sm/state"
)

// retainedService serves retained messages from the data groups, routed
// by topic (metapb.DataGroupFor(topic)).
type retainedService struct {
	metapb.UnimplementedRetainedServer
	s *Server
}

// topicFilter is a parsed MQTT topic filter.
//
// Matching follows MQTT 3.1.1/5 section 4.7: levels are separated by '/';
// '+' matches exactly one level (possibly empty); '#' matches the parent
// level and any number of levels below it, and may only be the last level;
// a wildcard must be a level on its own. Topics beginning with '$' are not
// matched by a filter whose first level is a wildcard.
//
// prefix is what every matching topic starts with: the literal levels
// before the first wildcard, joined by '/', followed by '/' when the
// wildcard is '+' ("a/+" needs "a/", "a/#" matches "a" itself). A filter
// without wildcards has the topic itself as prefix.
type topicFilter struct {
	levels []string
	prefix string
}

// parseFilter validates a filter, naming field.
func parseFilter(field, filter string) (*topicFilter, error) {
	if err := checkRequired(field, filter, metapb.MaxTopicBytes); err != nil {
		return nil, err
	}
	if i := strings.IndexByte(filter, 0); i >= 0 {
		return nil, invalid(field, "byte %d is NUL", i)
	}
	f := &topicFilter{levels: strings.Split(filter, "/")}
	first := -1
	for i, l := range f.levels {
		switch {
		case l == "#" && i != len(f.levels)-1:
			return nil, invalid(field, "'#' must be the last level")
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return nil, invalid(field, "level %d (%q): a wildcard must be a level on its own", i, l)
		case (l == "#" || l == "+") && first < 0:
			first = i
		}
	}
	switch {
	case first < 0:
		f.prefix = filter
	case first == 0:
		f.prefix = ""
	default:
		f.prefix = strings.Join(f.levels[:first], "/")
		if f.levels[first] == "+" {
			f.prefix += "/"
		}
	}
	return f, nil
}

// match reports whether topic matches the filter.
func (f *topicFilter) match(topic string) bool {
	if strings.HasPrefix(topic, "$") && (f.levels[0] == "+" || f.levels[0] == "#") {
		return false
	}
	tl := strings.Split(topic, "/")
	for i, l := range f.levels {
		if l == "#" {
			return true // this level and everything below, or the parent alone
		}
		if i >= len(tl) || (l != "+" && l != tl[i]) {
			return false
		}
	}
	return len(tl) == len(f.levels)
}

func toRetained(topic string, r *logpb.Retained) *metapb.RetainedMessage {
	if r == nil {
		return nil
	}
	return &metapb.RetainedMessage{Topic: topic, Payload: r.Payload, Qos: r.Qos, Properties: r.Properties, ModRevision: r.ModRevision}
}

// Set stores a topic's retained message; an empty payload deletes it.
func (rs *retainedService) Set(ctx context.Context, req *metapb.SetRetainedRequest) (*metapb.SetRetainedResponse, error) {
	msg := req.Message
	if msg == nil {
		return nil, invalid("message", "must be set")
	}
	if err := firstErr(checkTopicName("message.topic", msg.Topic), checkMessage("message.", msg.Payload, msg.Properties, msg.Qos)); err != nil {
		return nil, err
	}
	s := rs.s
	res, err := s.proposeData(ctx, []byte(msg.Topic), &logpb.Op{Op: &logpb.Op_RetainedSet{RetainedSet: &logpb.RetainedSet{
		Topic: msg.Topic, Payload: msg.Payload, Qos: msg.Qos, Properties: msg.Properties}}})
	if err != nil {
		return nil, err
	}
	if err := resultError(res, "retained message of "+msg.Topic, "message.topic", 0); err != nil {
		return nil, err
	}
	return &metapb.SetRetainedResponse{Deleted: len(msg.Payload) == 0 && res.Count > 0, Revision: res.Revision}, nil
}

// Get reads a topic's retained message; unset when there is none.
func (rs *retainedService) Get(ctx context.Context, req *metapb.GetRetainedRequest) (*metapb.GetRetainedResponse, error) {
	return getByKey(ctx, rs.s, "topic", req.Topic, checkTopicName, req.Consistency, state.Reader.Retained,
		func(r *logpb.Retained) *metapb.GetRetainedResponse {
			return &metapb.GetRetainedResponse{Message: toRetained(req.Topic, r)}
		})
}

// List pages through the retained messages whose topic matches a filter,
// in topic order, merged over the data groups. Each group scans only the
// topics under the filter's literal prefix.
func (rs *retainedService) List(ctx context.Context, req *metapb.ListRetainedRequest) (*metapb.ListRetainedResponse, error) {
	f, err := parseFilter("topic_filter", req.TopicFilter)
	if err != nil {
		return nil, err
	}
	if err := firstErr(checkStartAfter(req.StartAfter, metapb.MaxTopicBytes), checkLimit(req.Limit), checkConsistency(req.Consistency)); err != nil {
		return nil, err
	}
	limit := listLimit(req.Limit)
	page, more, next, err := listPage(ctx, rs.s, req.Consistency, req, limit, func(_ string, m state.Reader) ([]state.RetainedEntry, bool, error) {
		return m.RetainedList(f.prefix, req.StartAfter, limit, f.match)
	}, func(e state.RetainedEntry) *metapb.RetainedMessage { return toRetained(e.Topic, e.Msg) },
		(*metapb.ListRetainedResponse).GetMessages, (*metapb.RetainedMessage).GetTopic)
	if err != nil {
		return nil, err
	}
	return &metapb.ListRetainedResponse{More: more, Messages: page, NextStartAfter: next}, nil
}
