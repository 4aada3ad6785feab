package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// kindDef describes one resource kind for the shared commands: its
// command name, enum, and how its spec is set from flags.
type kindDef struct {
	word  string
	kind  metapb.ResourceKind
	short string
	// flags registers the spec flags on fs and returns apply, which sets
	// the spec fields whose flags changed (all of them on create) on r,
	// giving r a spec of this kind if it has none.
	flags func(fs *pflag.FlagSet) (apply func(r *metapb.Resource, changed func(string) bool) error)
}

var kinds = []kindDef{
	{"topic", metapb.ResourceKind_RESOURCE_KIND_TOPIC, "Topics (partitions, config)", topicFlags},
	{"broker", metapb.ResourceKind_RESOURCE_KIND_BROKER, "Brokers of the messaging cluster (registration data)", brokerFlags},
	{"connector", metapb.ResourceKind_RESOURCE_KIND_CONNECTOR, "Connectors (type, config, desired state)", connectorFlags},
	{"user", metapb.ResourceKind_RESOURCE_KIND_USER, "Users (SASL mechanism, credential, roles)", userFlags},
	{"acl", metapb.ResourceKind_RESOURCE_KIND_ACL, "ACL rules", aclFlags},
	{"schema", metapb.ResourceKind_RESOURCE_KIND_SCHEMA, "Schemas", schemaFlags},
}

func kindByWord(w string) (metapb.ResourceKind, bool) {
	for _, k := range kinds {
		if k.word == w {
			return k.kind, true
		}
	}
	return 0, false
}

func kindWords() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.word)
	}
	return out
}

func topicFlags(fs *pflag.FlagSet) func(*metapb.Resource, func(string) bool) error {
	var partitions, rf int32
	var config map[string]string
	fs.Int32Var(&partitions, "partitions", 1, "number of partitions")
	fs.Int32Var(&rf, "replication-factor", 0, "replication factor (0: the broker's default)")
	fs.StringToStringVar(&config, "config", nil, "topic config, key=value (repeat or comma-separate)")
	return func(r *metapb.Resource, changed func(string) bool) error {
		sp := r.GetTopic()
		if sp == nil {
			sp = &metapb.TopicSpec{}
			r.Spec = &metapb.Resource_Topic{Topic: sp}
		}
		if changed("partitions") {
			sp.Partitions = partitions
		}
		if changed("replication-factor") {
			sp.ReplicationFactor = rf
		}
		if changed("config") {
			sp.Config = mergeMap(sp.Config, config)
		}
		return nil
	}
}

func brokerFlags(fs *pflag.FlagSet) func(*metapb.Resource, func(string) bool) error {
	var endpoints []string
	var rack string
	var tags map[string]string
	fs.StringSliceVar(&endpoints, "endpoint", nil, "broker endpoint host:port (repeat)")
	fs.StringVar(&rack, "rack", "", "rack")
	fs.StringToStringVar(&tags, "tag", nil, "tag key=value (repeat)")
	return func(r *metapb.Resource, changed func(string) bool) error {
		sp := r.GetBroker()
		if sp == nil {
			sp = &metapb.BrokerSpec{}
			r.Spec = &metapb.Resource_Broker{Broker: sp}
		}
		if changed("endpoint") {
			sp.Endpoints = endpoints
		}
		if changed("rack") {
			sp.Rack = rack
		}
		if changed("tag") {
			sp.Tags = mergeMap(sp.Tags, tags)
		}
		return nil
	}
}

func connectorFlags(fs *pflag.FlagSet) func(*metapb.Resource, func(string) bool) error {
	var typ, state string
	var config map[string]string
	fs.StringVar(&typ, "type", "", "plugin or class implementing the connector")
	fs.StringToStringVar(&config, "config", nil, "connector config, key=value (repeat)")
	fs.StringVar(&state, "state", "running", "desired state: running, paused or stopped")
	return func(r *metapb.Resource, changed func(string) bool) error {
		sp := r.GetConnector()
		if sp == nil {
			sp = &metapb.ConnectorSpec{}
			r.Spec = &metapb.Resource_Connector{Connector: sp}
		}
		if changed("type") {
			sp.Type = typ
		}
		if changed("config") {
			sp.Config = mergeMap(sp.Config, config)
		}
		if changed("state") {
			v, ok := metapb.ConnectorState_value["CONNECTOR_STATE_"+strings.ToUpper(state)]
			if !ok || v == 0 {
				return fmt.Errorf("--state %q: want running, paused or stopped", state)
			}
			sp.DesiredState = metapb.ConnectorState(v)
		}
		return nil
	}
}

func userFlags(fs *pflag.FlagSet) func(*metapb.Resource, func(string) bool) error {
	var mechanism, credential string
	var roles []string
	fs.StringVar(&mechanism, "mechanism", "SCRAM-SHA-256", "SASL mechanism")
	fs.StringVar(&credential, "credential", "", "stored credential")
	fs.StringSliceVar(&roles, "role", nil, "role (repeat)")
	return func(r *metapb.Resource, changed func(string) bool) error {
		sp := r.GetUser()
		if sp == nil {
			sp = &metapb.UserSpec{}
			r.Spec = &metapb.Resource_User{User: sp}
		}
		if changed("mechanism") {
			sp.Mechanism = mechanism
		}
		if changed("credential") {
			sp.Credential = []byte(credential)
		}
		if changed("role") {
			sp.Roles = roles
		}
		return nil
	}
}

func aclFlags(fs *pflag.FlagSet) func(*metapb.Resource, func(string) bool) error {
	var principal, rtype, pattern, ptype, op, perm, host string
	fs.StringVar(&principal, "principal", "", "principal, e.g. User:alice")
	fs.StringVar(&rtype, "resource-type", "topic", "topic, group or cluster")
	fs.StringVar(&pattern, "resource-pattern", "", "resource name or prefix")
	fs.StringVar(&ptype, "pattern-type", "LITERAL", "LITERAL or PREFIXED")
	fs.StringVar(&op, "operation", "", "operation, e.g. READ")
	fs.StringVar(&perm, "permission", "ALLOW", "ALLOW or DENY")
	fs.StringVar(&host, "host", "*", "host")
	return func(r *metapb.Resource, changed func(string) bool) error {
		sp := r.GetAcl()
		if sp == nil {
			sp = &metapb.AclSpec{}
			r.Spec = &metapb.Resource_Acl{Acl: sp}
		}
		for _, f := range []struct {
			name string
			dst  *string
			v    string
		}{{"principal", &sp.Principal, principal}, {"resource-type", &sp.ResourceType, rtype},
			{"resource-pattern", &sp.ResourcePattern, pattern}, {"pattern-type", &sp.PatternType, ptype},
			{"operation", &sp.Operation, op}, {"permission", &sp.Permission, perm}, {"host", &sp.Host, host}} {
			if changed(f.name) {
				*f.dst = f.v
			}
		}
		return nil
	}
}

func schemaFlags(fs *pflag.FlagSet) func(*metapb.Resource, func(string) bool) error {
	var format, definition string
	var refs map[string]string
	fs.StringVar(&format, "format", "AVRO", "AVRO, JSON or PROTOBUF")
	fs.StringVar(&definition, "definition", "", "schema definition")
	fs.StringToStringVar(&refs, "reference", nil, "reference name=subject (repeat)")
	return func(r *metapb.Resource, changed func(string) bool) error {
		sp := r.GetSchema()
		if sp == nil {
			sp = &metapb.SchemaSpec{}
			r.Spec = &metapb.Resource_Schema{Schema: sp}
		}
		if changed("format") {
			sp.Format = format
		}
		if changed("definition") {
			sp.Definition = definition
		}
		if changed("reference") {
			sp.References = mergeMap(sp.References, refs)
		}
		return nil
	}
}

// mergeMap sets the given keys on m; an empty value removes a key.
func mergeMap(m, set map[string]string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	for k, v := range set {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// specJSON renders a resource's spec on one line.
func specJSON(r *metapb.Resource) string {
	var msg proto.Message
	switch sp := r.Spec.(type) {
	case *metapb.Resource_Topic:
		msg = sp.Topic
	case *metapb.Resource_Broker:
		msg = sp.Broker
	case *metapb.Resource_Connector:
		msg = sp.Connector
	case *metapb.Resource_User:
		msg = sp.User
	case *metapb.Resource_Acl:
		msg = sp.Acl
	case *metapb.Resource_Schema:
		msg = sp.Schema
	default:
		return "{}"
	}
	b, err := protojson.Marshal(msg)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// resourceCommands returns one command per kind, each with create, get,
// list, update and delete, sharing one implementation.
func (a *app) resourceCommands() []*cobra.Command {
	var out []*cobra.Command
	for _, k := range kinds {
		out = append(out, a.kindCommand(k))
	}
	return out
}

func (a *app) printResources(rs []*metapb.Resource) {
	a.table("NAME\tREVISION\tVERSION\tSPEC", func(tw io.Writer) {
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Name, r.ModRevision, r.Version, specJSON(r))
		}
	})
}

func (a *app) kindCommand(k kindDef) *cobra.Command {
	cmd := &cobra.Command{Use: k.word, Short: k.short}
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a " + k.word, Args: cobra.ExactArgs(1),
	}
	applyCreate := k.flags(create.Flags())
	create.RunE = func(_ *cobra.Command, args []string) error {
		r := &metapb.Resource{Kind: k.kind, Name: args[0]}
		if err := applyCreate(r, func(string) bool { return true }); err != nil {
			return err
		}
		return show(a, func(ctx context.Context, c *client.Client) (*metapb.CreateResourceResponse, error) {
			return c.CreateResource(ctx, &metapb.CreateResourceRequest{Resource: r})
		}, func(resp *metapb.CreateResourceResponse) {
			fmt.Fprintf(a.out, "created %s %s at revision %d\n", k.word, r.Name, resp.Resource.ModRevision)
		})
	}

	var stale bool
	get := &cobra.Command{
		Use: "get NAME", Short: "Print a " + k.word, Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.GetResourceResponse, error) {
				return c.GetResource(ctx, &metapb.GetResourceRequest{Kind: k.kind, Name: args[0], Consistency: consistency(stale)})
			}, func(resp *metapb.GetResourceResponse) { a.printResources([]*metapb.Resource{resp.Resource}) })
		},
	}
	staleFlag(get.Flags(), &stale)

	var prefix string
	var limit uint32
	var all bool
	list := &cobra.Command{
		Use: "list", Short: "List " + k.word + "s in name order (one page, or every page with --all)", Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			req := &metapb.ListResourcesRequest{Kind: k.kind, NamePrefix: prefix, Limit: limit, Consistency: consistency(stale)}
			return pages(a, all, &req.StartAfter, func(ctx context.Context, c *client.Client) (*metapb.ListResourcesResponse, error) {
				return c.ListResources(ctx, req)
			}, func(resp *metapb.ListResourcesResponse) { a.printResources(resp.Resources) })
		},
	}
	list.Flags().StringVar(&prefix, "prefix", "", "only names with this prefix")
	pageFlags(list.Flags(), &limit, &all, "resources")
	staleFlag(list.Flags(), &stale)

	var revision uint64
	update := &cobra.Command{
		Use:   "update NAME",
		Short: "Change the given spec fields of a " + k.word + " (only if it is still at --revision; default: the revision read)",
		Args:  cobra.ExactArgs(1),
	}
	applyUpdate := k.flags(update.Flags())
	update.Flags().Uint64Var(&revision, "revision", 0, "expected mod revision (read, change, write back)")
	update.RunE = func(cmd *cobra.Command, args []string) error {
		return a.with(func(ctx context.Context, c *client.Client) error {
			cur, err := c.GetResource(ctx, &metapb.GetResourceRequest{Kind: k.kind, Name: args[0]})
			if err != nil {
				return err
			}
			r := cur.Resource
			if err := applyUpdate(r, cmd.Flags().Changed); err != nil {
				return err
			}
			expected := revision
			if expected == 0 {
				expected = r.ModRevision
			}
			resp, err := c.UpdateResource(ctx, &metapb.UpdateResourceRequest{Resource: r, ExpectedRevision: expected})
			if err != nil {
				return err
			}
			return a.emit(resp, func() {
				fmt.Fprintf(a.out, "updated %s %s at revision %d\n", k.word, r.Name, resp.Resource.ModRevision)
			})
		})
	}

	var delRevision uint64
	del := &cobra.Command{
		Use: "delete NAME", Aliases: []string{"del"}, Short: "Delete a " + k.word, Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return show(a, func(ctx context.Context, c *client.Client) (*metapb.DeleteResourceResponse, error) {
				return c.DeleteResource(ctx, &metapb.DeleteResourceRequest{Kind: k.kind, Name: args[0], ExpectedRevision: delRevision})
			}, func(resp *metapb.DeleteResourceResponse) {
				fmt.Fprintf(a.out, "deleted %s %s at revision %d\n", k.word, args[0], resp.Revision)
			})
		},
	}
	del.Flags().Uint64Var(&delRevision, "revision", 0, "delete only at this mod revision")
	cmd.AddCommand(create, get, list, update, del)
	return cmd
}

func consistency(stale bool) metapb.ReadConsistency {
	if stale {
		return metapb.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return metapb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

// addMerged adds commands to root; a command whose name root already has
// (e.g. "broker" from the controller commands) is merged into it, and a
// subcommand whose name is taken there keeps working as NAME-resources
// (e.g. "broker list-resources").
func addMerged(root *cobra.Command, cmds ...*cobra.Command) {
	for _, c := range cmds {
		var existing *cobra.Command
		for _, e := range root.Commands() {
			if e.Name() == c.Name() {
				existing = e
			}
		}
		if existing == nil {
			root.AddCommand(c)
			continue
		}
		for _, sub := range c.Commands() {
			c.RemoveCommand(sub)
			for _, e := range existing.Commands() {
				if e.Name() == sub.Name() {
					sub.Use = sub.Name() + "-resources" + strings.TrimPrefix(sub.Use, sub.Name())
					sub.Aliases = nil
				}
			}
			existing.AddCommand(sub)
		}
	}
}
