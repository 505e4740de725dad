package gofw

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dtm-labs/client/dtmgrpc"
	gozerodriver "github.com/dtm-labs/dtmdriver-gozero"
	"github.com/zeromicro/go-zero/core/conf"
	"github.com/zeromicro/go-zero/zrpc"
	"google.golang.org/grpc"
)

// gozeroKey is the etcd key the bank registers under; go-zero writes <key>/<lease ID> = its
// address, and dtm-host's gozero driver registers itself the same way under "dtmservice".
const gozeroKey = "bank.rpc"

// TestServeGoZero is the business service as a go-zero project has it: a zrpc server whose
// configuration (a project's etc/*.yaml) names etcd, so go-zero registers it there, keeps the
// lease alive, and on SIGTERM revokes it and stops gracefully.
func TestServeGoZero(t *testing.T) {
	serving(t)
	ledger, err := openLedger(filepath.Join(dataDir, "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c zrpc.RpcServerConf
	yaml := fmt.Sprintf(`
Name: %s
ListenOn: %s
Log:
  Level: error
Etcd:
  Hosts: [%s]
  Key: %s
`, gozeroKey, bankAddr(), etcdAddr, gozeroKey)
	if err := conf.LoadFromYamlBytes([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	server := zrpc.MustNewServer(c, func(s *grpc.Server) { registerBank(s, ledger) })
	server.Start() // returns once SIGTERM has stopped it
}

// TestGoZero is a go-zero application using dtm's Go SDK with dtm's go-zero driver: the SDK
// reaches dtm-host at etcd://…/dtmservice through go-zero's resolver (which the driver
// installs), and dtm-host reaches the bank at etcd://…/bank.rpc through its own gozero driver.
func TestGoZero(t *testing.T) {
	if err := dtmgrpc.UseDriver(gozerodriver.DriverName); err != nil {
		t.Fatal(err)
	}
	var c zrpc.RpcClientConf
	yaml := fmt.Sprintf(`
Etcd:
  Hosts: [%s]
  Key: %s
NonBlock: true
`, etcdAddr, gozeroKey)
	if err := conf.LoadFromYamlBytes([]byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	bank := zrpc.MustNewClient(c)
	etcd := "etcd://" + etcdAddr
	a := &app{
		t:     t,
		dtm:   etcd + "/dtmservice",
		url:   func(method string) string { return etcd + "/" + gozeroKey + "/" + bankService + "/" + method },
		bank:  bank.Conn(),
		serve: "TestServeGoZero",
	}
	a.run()
}
