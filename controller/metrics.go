package controller

import (
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metamq/meta/sm"
)

var (
	descActive      = prometheus.NewDesc("meta_controller_active", "1 on the node whose controller is active (the metadata-0 leader).", nil, nil)
	descBrokers     = prometheus.NewDesc("meta_controller_brokers", "Registered brokers by status (alive, down), as the active controller sees them.", []string{"status"}, nil)
	descAssignments = prometheus.NewDesc("meta_controller_assignments", "Connector assignments recorded.", nil, nil)
	descConnectors  = prometheus.NewDesc("meta_controller_connectors", "Connectors defined.", nil, nil)
	descDeclared    = prometheus.NewDesc("meta_controller_brokers_declared_down_total", "Brokers this controller declared down since it became active.", nil, nil)
	descAssigned    = prometheus.NewDesc("meta_controller_assignments_made_total", "Assignments this controller proposed since it became active.", nil, nil)
	descMoves       = prometheus.NewDesc("meta_controller_replica_moves_total", "Replica placement changes this controller proposed since it became active.", nil, nil)
	descAutoSplits  = prometheus.NewDesc("meta_controller_auto_splits_total", "Automatic splits this controller started since it became active, by reason (size, load).", []string{"reason"}, nil)
)

// Collector returns the controller's figures for a Prometheus registry.
// Only the active controller reports the brokers and assignments (every
// node would otherwise report the same cluster-wide numbers).
func (c *Controller) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Controller }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descBrokers, descAssignments, descConnectors, descDeclared, descAssigned, descMoves, descAutoSplits} {
		ch <- d
	}
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	c := k.c
	active := c.Active()
	v := 0.0
	if active {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, v)
	if !active {
		return
	}
	c.mu.Lock()
	declared, assigned, moves := c.declaredDown, c.assigned, c.moves
	splits := map[string]uint64{}
	if c.splitting != nil {
		maps.Copy(splits, c.splitting.splits)
	}
	c.mu.Unlock()
	for _, reason := range []string{"size", "load"} {
		ch <- prometheus.MustNewConstMetric(descAutoSplits, prometheus.CounterValue, float64(splits[reason]), reason)
	}
	ch <- prometheus.MustNewConstMetric(descDeclared, prometheus.CounterValue, float64(declared))
	ch <- prometheus.MustNewConstMetric(descAssigned, prometheus.CounterValue, float64(assigned))
	ch <- prometheus.MustNewConstMetric(descMoves, prometheus.CounterValue, float64(moves))
	st, err := c.state()
	if err != nil {
		return
	}
	alive, down := 0, 0
	for _, b := range st.Brokers {
		if b.Status == sm.BrokerAlive {
			alive++
		} else {
			down++
		}
	}
	ch <- prometheus.MustNewConstMetric(descBrokers, prometheus.GaugeValue, float64(alive), "alive")
	ch <- prometheus.MustNewConstMetric(descBrokers, prometheus.GaugeValue, float64(down), "down")
	ch <- prometheus.MustNewConstMetric(descAssignments, prometheus.GaugeValue, float64(len(st.Assignments)))
	ch <- prometheus.MustNewConstMetric(descConnectors, prometheus.GaugeValue, float64(len(st.Connectors)))
}
