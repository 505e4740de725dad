package gofw

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtm-labs/client/dtmgrpc"
	kratosdriver "github.com/dtm-labs/dtmdriver-kratos"
	"github.com/go-kratos/kratos/contrib/registry/etcd/v2"
	"github.com/go-kratos/kratos/v2"
	"github.com/go-kratos/kratos/v2/log"
	kgrpc "github.com/go-kratos/kratos/v2/transport/grpc"
	"github.com/go-kratos/kratos/v2/transport/grpc/resolver/discovery"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"
)

// kratosName is the service name the bank registers under: kratos' etcd registry writes
// /microservices/<name>/<instance ID> = the instance as JSON, with its grpc:// endpoint.
const kratosName = "bank"

func etcdRegistry(t *testing.T) *etcd.Registry {
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdAddr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return etcd.New(client)
}

// TestServeKratos is the business service as a kratos project has it: a kratos app with a gRPC
// server and the etcd registry, which registers it on start and removes it on SIGTERM.
func TestServeKratos(t *testing.T) {
	serving(t)
	ledger, err := openLedger(filepath.Join(dataDir, "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	server := kgrpc.NewServer(kgrpc.Address(bankAddr()))
	registerBank(server, ledger)
	logger := log.NewFilter(log.DefaultLogger, log.FilterLevel(log.LevelWarn))
	app := kratos.New(kratos.Name(kratosName), kratos.Server(server), kratos.Registrar(etcdRegistry(t)), kratos.Logger(logger))
	if err := app.Run(); err != nil { // returns once SIGTERM has stopped it
		t.Fatal(err)
	}
}

// TestKratos is a kratos application using dtm's Go SDK with dtm's kratos driver: the SDK
// reaches dtm-host at discovery:///dtmservice and dtm-host reaches the bank at
// discovery:///bank through its own kratos driver.
func TestKratos(t *testing.T) {
	registry := etcdRegistry(t)
	// dtm's kratos driver installs no resolver when activated (it does so only where it
	// registers a service: on dtm's side), so the application installs kratos' discovery
	// resolver for the SDK's connections to dtm-host, over the registry it uses anyway.
	resolver.Register(discovery.NewBuilder(registry, discovery.WithInsecure(true), discovery.PrintDebugLog(false)))
	if err := dtmgrpc.UseDriver(kratosdriver.DriverName); err != nil {
		t.Fatal(err)
	}
	bank, err := kgrpc.DialInsecure(context.Background(),
		kgrpc.WithEndpoint("discovery:///"+kratosName),
		kgrpc.WithDiscovery(registry),
		kgrpc.WithPrintDiscoveryDebugLog(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bank.Close() })
	a := &app{
		t:     t,
		dtm:   "discovery:///dtmservice",
		url:   func(method string) string { return "discovery:///" + kratosName + "/" + bankService + "/" + method },
		bank:  bank,
		serve: "TestServeKratos",
	}
	a.run()
}
