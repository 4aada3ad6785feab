package mqtt

import (
	"encoding/json"
	"fmt"
	"sort"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/metamq/meta/rpc/metapb"
)

// stateVersion is written in every state; a broker refuses (and logs) a
// state of a version it does not know instead of misreading it.
const stateVersion = 1

// sessionState is what a broker keeps in Session.state: the client's
// properties that decide how its session is resumed, its subscriptions
// and, when it disconnected, its in-flight messages. It is JSON so that a
// person (or metactl) can read it.
type sessionState struct {
	V               int                    `json:"v"`
	ProtocolVersion byte                   `json:"pv,omitempty"`
	Username        []byte                 `json:"user,omitempty"`
	Subscriptions   []packets.Subscription `json:"subs,omitempty"`
	Inflight        []storage.Message      `json:"inflight,omitempty"`
}

// encodeState encodes a client's session state. In-flight messages are
// left out (oldest first) when the state would exceed meta's limit.
func encodeState(cl *mqtt.Client, withInflight bool) ([]byte, error) {
	st := sessionState{V: stateVersion, ProtocolVersion: cl.Properties.ProtocolVersion, Username: cl.Properties.Username}
	subs := cl.State.Subscriptions.GetAll()
	filters := make([]string, 0, len(subs))
	for f := range subs {
		filters = append(filters, f)
	}
	sort.Strings(filters)
	for _, f := range filters {
		st.Subscriptions = append(st.Subscriptions, subs[f])
	}
	if withInflight {
		for _, pk := range cl.State.Inflight.GetAll(false) {
			st.Inflight = append(st.Inflight, storage.Message{
				Client: cl.ID, Origin: pk.Origin, TopicName: pk.TopicName, Payload: pk.Payload,
				FixedHeader: pk.FixedHeader, PacketID: pk.PacketID, Created: pk.Created,
				Properties: storage.MessageProperties{
					CorrelationData: pk.Properties.CorrelationData, SubscriptionIdentifier: pk.Properties.SubscriptionIdentifier,
					User: pk.Properties.User, ContentType: pk.Properties.ContentType, ResponseTopic: pk.Properties.ResponseTopic,
					MessageExpiryInterval: pk.Properties.MessageExpiryInterval, PayloadFormat: pk.Properties.PayloadFormat,
					PayloadFormatFlag: pk.Properties.PayloadFormatFlag,
				},
			})
		}
		sort.Slice(st.Inflight, func(i, j int) bool { return st.Inflight[i].Created < st.Inflight[j].Created })
	}
	for {
		b, err := json.Marshal(&st)
		if err != nil {
			return nil, err
		}
		if len(b) <= metapb.MaxSessionStateBytes {
			return b, nil
		}
		if len(st.Inflight) == 0 {
			return nil, fmt.Errorf("mqtt: session state of %q: %d bytes of subscriptions, over meta's limit of %d", cl.ID, len(b), metapb.MaxSessionStateBytes)
		}
		st.Inflight = st.Inflight[len(st.Inflight)/2+len(st.Inflight)%2:]
	}
}

func decodeState(b []byte) (*sessionState, error) {
	var st sessionState
	if len(b) == 0 {
		return &st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("mqtt: session state: %w", err)
	}
	if st.V != stateVersion {
		return nil, fmt.Errorf("mqtt: session state version %d, this broker knows %d", st.V, stateVersion)
	}
	return &st, nil
}
